"""Where opsconsole keeps things: XDG base directories, overridable for tests and scripts."""

from __future__ import annotations

import os
from pathlib import Path


def state_home() -> Path:
    """``$XDG_STATE_HOME/opsconsole`` (default ``~/.local/state/opsconsole``): journals, reports, the lab."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "opsconsole"


def default_lab_dir() -> Path:
    """The lab's directory unless ``--dir`` says otherwise (``$OPSCONSOLE_LAB_DIR`` overrides)."""
    if os.environ.get("OPSCONSOLE_LAB_DIR"):
        return Path(os.environ["OPSCONSOLE_LAB_DIR"])
    return state_home() / "lab"
