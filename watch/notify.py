"""What an alert says, and its delivery through apprise (one apprise instance per configured target, so a
target that fails is retried alone and the others are not sent the message twice).

A message names the finding, its evidence (the finding's own sentence: the node, the lag, the archive's
age), since when, and the console command that shows more.  It never carries a URL or a secret: the
targets are logged and journaled by their label alone, and apprise's own logger is silenced (its failure
lines could name a webhook's host and path).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console.config_file import ConfigError
from console.units import duration
from console.watch_config import NotifyTarget
from watch.rules import Transition

# The command that shows the evidence behind a finding, by its code's prefix (else the status report).
_MORE = (
    ("backup-", "--action archives"),
    ("restore-verify", "--action archives"),
    ("ha-drift", "--action ha --dry-run"),
)


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def more_command(code: str, command: str, config_path: Path | None) -> str:
    flags = next((f for prefix, f in _MORE if code.startswith(prefix)), "--action status")
    where = f" --config {config_path}" if config_path else ""
    return f"{command}{where} {flags}"


def render(t: Transition, cluster: str, command: str, config_path: Path | None) -> tuple[str, str]:
    """(title, body) of the message for one transition."""
    a = t.alert
    if t.kind == "resolved":
        title = f"[RESOLVED] {a.code}: {a.subject} ({cluster})"
        lasted = t.at - (a.fired_at or a.since)
        lines = [
            f"was: {a.message}",
            f"firing since {_stamp(a.fired_at or a.since)}, resolved {_stamp(t.at)}",
            f"open {duration(lasted)}",
        ]
    else:
        label = {"firing": "FIRING", "changed": "CHANGED", "repeat": "STILL FIRING"}[t.kind]
        title = f"[{label} {a.severity}] {a.code}: {a.subject} ({cluster})"
        lines = [a.message, f"since {_stamp(a.since)} ({duration(t.at - a.since)} ago)"]
    lines.append(f"more: {more_command(a.code, command, config_path)}")
    return title, "\n".join(lines)


_ORDER = {"firing": 0, "changed": 1, "repeat": 2, "resolved": 3}
_SEVERITY = {"critical": 0, "warning": 1, "info": 2}


def ordered(transitions: list[Transition]) -> list[Transition]:
    """New trouble first (firing, then changed, repeated, resolved), the most severe first within each."""
    return sorted(
        transitions, key=lambda t: (_ORDER[t.kind], _SEVERITY.get(t.alert.severity, 3), t.alert.key)
    )


def render_group(
    transitions: list[Transition], cluster: str, command: str, config_path: Path | None
) -> tuple[Transition, str, str]:
    """One message for the transitions of one evaluation (a node failure raises a dozen findings at
    once; one message per finding would bury the one that matters): the first transition in
    :func:`ordered` order, the title, the body.  Each transition keeps its own header line in the body."""
    group = ordered(transitions)
    if len(group) == 1:
        return group[0], *render(group[0], cluster, command, config_path)
    blocks = []
    for t in group:
        title, body = render(t, cluster, command, config_path)
        blocks.append(title.removesuffix(f" ({cluster})") + "\n" + body)
    first = blocks[0].split("\n", 1)[0]
    return group[0], f"{first} and {len(group) - 1} more ({cluster})", "\n\n".join(blocks)


class Notifier:
    def __init__(self, targets: list[NotifyTarget]) -> None:
        self.targets = {t.label: t for t in targets}
        self._apprise: dict[str, Any] = {}
        logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)

    def prepare(self) -> None:
        """Every target's apprise instance, at start: a URL apprise refuses or a reference that cannot be
        read stops the watcher with its sentence (exit 2) instead of at the first alert; and apprise, whose
        plugins weigh ~40 MB, is loaded once, before the memory the watcher keeps is measured."""
        for label in self.targets:
            self._instance(label)

    def _instance(self, label: str) -> Any:
        import apprise

        if label not in self._apprise:
            target = self.targets[label]
            instance = apprise.Apprise()
            if not instance.add(target.resolve()):
                raise ConfigError(f"watch.notify {label}: apprise does not accept this URL")
            self._apprise[label] = instance
        return self._apprise[label]

    async def deliver(self, label: str, title: str, body: str, kind: str, severity: str) -> str | None:
        """Send one message; None when delivered, else why not (one sentence, no URL)."""
        import apprise

        if label not in self.targets:
            return f"{label} is no longer a configured target"
        try:
            instance = self._instance(label)
        except ConfigError as exc:
            return str(exc)
        notify_type = (
            apprise.NotifyType.SUCCESS
            if kind == "resolved" or (kind == "scheduled" and severity == "info")
            else apprise.NotifyType.FAILURE
            if severity == "critical"
            else apprise.NotifyType.WARNING
        )
        try:
            ok = await instance.async_notify(title=title, body=body, notify_type=notify_type)
        except Exception as exc:  # a plugin's own failure: reported as the target's, never raised
            return f"{label}: {type(exc).__name__}"
        return None if ok else f"{label}: apprise could not deliver"
