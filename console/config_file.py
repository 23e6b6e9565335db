"""Reading a config file before validating it: what the first frame needs, without pydantic.

Validation (``console/config.py``) imports pydantic and builds its models: a sizeable part of the
dashboard's first-paint budget (bench/dashboard.py).  The TUI paints from :func:`read_head` — the file
read and its TOML parsed, so a missing file or a syntax error still stops it before anything is drawn —
and validates in a
thread right after the first frame; a config that fails validation ends the app with the same one-sentence
message and exit 2 as any other command.  Everything else validates first.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console.errors import UsageError

ENV_CONFIG = "OPSCONSOLE_CONFIG"


class ConfigError(UsageError):
    """A config problem, already phrased for the operator (``file:line: field: message``): exit 2."""


def default_config_path() -> Path:
    """``$OPSCONSOLE_CONFIG``, else ``$XDG_CONFIG_HOME/opsconsole/config.toml``, else ``./config.toml``."""
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "opsconsole" / "config.toml"
    return xdg if xdg.exists() else Path("config.toml")


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """(text, parsed TOML) of ``path``; :class:`ConfigError` for a missing, unreadable or malformed file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read config file: {reason}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{path}:{m.group(1)}" if m else str(path)
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"{where}: TOML syntax error: {msg}") from None


@dataclass(frozen=True)
class ConfigHead:
    """The banner's words from a parsed, not yet validated, config: which cluster, which context, lab."""

    path: Path
    cluster: str
    context: str
    lab: bool


def read_head(path: Path) -> ConfigHead:
    _, raw = read_toml(path)
    cluster: dict[str, Any] = raw["cluster"] if isinstance(raw.get("cluster"), dict) else {}
    kube: dict[str, Any] = raw["kubernetes"] if isinstance(raw.get("kubernetes"), dict) else {}
    return ConfigHead(
        path,
        str(cluster.get("name", "?")),
        str(kube.get("context", "default")),  # KubernetesConfig.context's default
        "lab" in raw,
    )
