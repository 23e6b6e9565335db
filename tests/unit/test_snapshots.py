"""SVG snapshot tests of the dashboard and the help screen at a fixed terminal size (pytest-textual-snapshot).

The store is filled with a fixed cluster state (the seed's, with one drifted patch, a lagging replica and
an overdue backup) and the panels' clock is frozen, so the picture changes only when the rendering does.
Live data is covered by the Pilot tests against the lab; this guards layout, columns and colours.
Update after an intended change with ``pytest tests/unit/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

import console.snapshot
import screens.panels
from console.config import load_config
from screens.app import Dashboard
from tests.conftest import ROOT
from tests.unit.seed_state import NOW, fill

SIZE = (150, 100)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = types.SimpleNamespace(time=lambda: NOW)
    monkeypatch.setattr(screens.panels, "time", clock)
    monkeypatch.setattr(console.snapshot, "time", clock)


def _app() -> Dashboard:
    return Dashboard(load_config(Path(ROOT / "config.toml")), start_sources=False)


def test_dashboard_snapshot(snap_compare: Any, frozen_clock: None) -> None:
    async def before(pilot: Any) -> None:
        fill(pilot.app.store)
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=SIZE, run_before=before)


def test_help_snapshot(snap_compare: Any, frozen_clock: None) -> None:
    assert snap_compare(_app(), terminal_size=(120, 40), press=["question_mark"])
