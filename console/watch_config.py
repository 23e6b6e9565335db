"""The ``[watch]`` section: how ``opsconsole watch`` turns findings into alerts and where it sends them.

Durations are written as Prometheus writes them (``30s``, ``5m``, ``4h``, ``1d``) and held in seconds.
Notification URLs are apprise URLs; like every secret in this config they are references: a URL may
name ``{env:NAME}`` or ``{file:PATH}`` for the part that is secret (a webhook's token, a mail password),
or come whole from ``url_env`` / ``url_file`` (a mounted Kubernetes Secret).  A literal ``user:password@``
in ``url`` is refused: that would put a secret into the config file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from console.config_file import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """``"30s"`` -> 30.0; a bare number is seconds.  Raises ValueError in one sentence otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration (like 30s, 5m, 4h, 1d)")
    return float(m.group(1)) * _UNIT_S[m.group(2) or "s"]


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


_REFERENCE = re.compile(r"\{(env|file):([^}]+)\}")
_LITERAL_PASSWORD = re.compile(r"^[a-z0-9+]+://[^/@:]+:[^/@{]+@", re.IGNORECASE)


class NotifyTarget(_Model):
    """One apprise URL: ``url`` (with ``{env:…}``/``{file:…}`` references), ``url_env`` or ``url_file``."""

    name: str = ""
    url: str | None = None
    url_env: str | None = None
    url_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> NotifyTarget:
        given = [x for x in (self.url, self.url_env, self.url_file) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of url, url_env, url_file")
        if self.url is not None and _LITERAL_PASSWORD.match(self.url):
            raise ValueError("url holds a password: write it as {env:NAME} or {file:PATH}, or use url_file")
        return self

    @property
    def label(self) -> str:
        """What logs, metrics and the journal call it: its name, else its scheme (never the URL)."""
        if self.name:
            return self.name
        if self.url:
            return self.url.split("://", 1)[0]
        return f"env:{self.url_env}" if self.url_env else f"file:{self.url_file}"

    def resolve(self) -> str:
        """The URL with its references read (raises ConfigError naming the reference, not its value)."""
        if self.url_env is not None:
            return _env(self.url_env, self.label)
        if self.url_file is not None:
            return _file(self.url_file, self.label)
        assert self.url is not None
        return _REFERENCE.sub(
            lambda m: (
                _env(m.group(2), self.label) if m.group(1) == "env" else _file(Path(m.group(2)), self.label)
            ),
            self.url,
        )


def _env(name: str, label: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"watch.notify {label}: ${name} is not set")
    return value


def _file(path: Path, label: str) -> str:
    try:
        return path.expanduser().read_text().strip()
    except OSError as exc:
        raise ConfigError(f"watch.notify {label}: cannot read {path}: {exc.strerror}") from None


class AlertRule(_Model):
    """Overrides for the findings of one code (``code = "*"`` is not needed: the section's own values are
    the defaults)."""

    code: str
    for_s: Duration | None = Field(None, alias="for")
    keep_firing_for_s: Duration | None = Field(None, alias="keep_firing_for")
    repeat_s: Duration | None = Field(None, alias="repeat")
    enabled: bool = True


_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


class ScheduledAction(_Model):
    """An action the watcher runs through the action pipeline (``cron`` in UTC, or ``every``).

    ``window`` (``HH:MM-HH:MM`` UTC): it never starts outside it — a run that was due while the watcher was
    down, or while another action held the cluster lock, waits for the next occurrence instead.  Writing
    the entry is the confirmation the action would ask for (``--yes``)."""

    action: str
    cron: str | None = None
    every_s: Duration | None = Field(None, alias="every", gt=0)
    window: str | None = None
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _when(self) -> ScheduledAction:
        if (self.cron is None) == (self.every_s is None):
            raise ValueError("give exactly one of cron, every")
        if self.cron is not None:
            from datetime import UTC, datetime

            from cronsim import CronSim, CronSimError

            try:
                CronSim(self.cron, datetime.now(UTC))
            except CronSimError as exc:
                raise ValueError(f"cron {self.cron!r}: {exc}") from None
        if self.window is not None and not _WINDOW.match(self.window):
            raise ValueError(f"window {self.window!r} is not HH:MM-HH:MM")
        return self

    def in_window(self, minute_of_day: int) -> bool:
        if self.window is None:
            return True
        m = _WINDOW.match(self.window)
        assert m is not None
        start, end = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
        return start <= minute_of_day < end if start <= end else minute_of_day >= start or minute_of_day < end


class WatchConfig(_Model):
    listen: str = "127.0.0.1:9469"
    # A finding must hold this long before it alerts (Prometheus's ``for``), and be gone this long before
    # the alert resolves (``keep_firing_for``): one flicker of a source is not an incident, nor its end.
    for_s: Duration = Field(30.0, alias="for")
    keep_firing_for_s: Duration = Field(10.0, alias="keep_firing_for")
    # An alert still open is said again this often (0: never).
    repeat_s: Duration = Field(4 * 3600.0, alias="repeat")
    # Findings below this severity never alert (the INFO ones are advice, not incidents).
    min_severity: Literal["info", "warning", "critical"] = "warning"
    # Findings are judged on every change the sources bring, and at least this often: some findings
    # change with the clock alone (a backup's age, a certificate's days left).
    evaluate_s: Duration = Field(15.0, gt=0)
    # A failed notification is tried again this often until it is delivered.
    retry_s: Duration = Field(30.0, gt=0)
    # One watcher alerts: the holder of this Lease (in drill.lock_namespace).
    lease_name: str = "opsconsole-watch"
    lease_duration_s: int = Field(15, ge=5, le=300)
    # How a message tells the reader to look closer: the command, with this config path.
    console_command: str = "opsconsole"
    notify: list[NotifyTarget] = Field(default_factory=list)
    rules: list[AlertRule] = Field(default_factory=list)
    schedule: list[ScheduledAction] = Field(default_factory=list)

    def listen_address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host or "127.0.0.1", int(port)

    @model_validator(mode="after")
    def _targets_named_apart(self) -> WatchConfig:
        # Messages are queued, journaled and retried per target label: two targets under one label would
        # be one target, the other silently never sent to.
        labels = [t.label for t in self.notify]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(f"notify: more than one target is called {', '.join(twice)}: give each a name")
        return self

    @model_validator(mode="after")
    def _listen_parses(self) -> WatchConfig:
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen: {self.listen!r} is not HOST:PORT")
        return self
