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


async def _filled(pilot: Any) -> None:
    fill(pilot.app.store)
    for _ in range(100):  # until the snapshot of the filled store is on screen
        await pilot.pause(0.02)
        if pilot.app.snapshot is not None and not pilot.app._building and pilot.app._build_timer is None:
            break
    await pilot.pause()


def test_dashboard_snapshot(snap_compare: Any, frozen_clock: None) -> None:
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_filled)


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 50)], ids=["80x24", "120x40", "200x50"])
def test_dashboard_snapshot_at_the_sizes_a_terminal_has(
    snap_compare: Any, frozen_clock: None, size: Any
) -> None:
    assert snap_compare(_app(), terminal_size=size, run_before=_filled)


async def test_the_verdict_and_the_panels_that_matter_fit_120_by_40(frozen_clock: None) -> None:
    """Summary, Findings, Nodes and Database without scrolling at 120×40; two columns from 160; ``z``."""
    from screens.panels import Panel

    app = _app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _filled(pilot)
        summary = app.query_one("#summary")
        said = str(summary.render())
        assert summary.region.y < 3 and said.startswith("CRITICAL │ nodes 3/3 │ db main-db-1 lag 16.0 MiB")
        assert said.endswith("!!1 !5 i3")
        for panel in ("findings", "nodes", "database"):
            region = app.query_one(f"#panel-{panel}", Panel).region
            assert region.height > 3 and region.bottom <= 39, (panel, region)
        assert not app.query_one("#panels").has_class("-wide")
        await pilot.press("2")  # the Nodes panel
        await pilot.press("z")
        shown = [p.panel_id for p in app.query(Panel) if p.display]
        assert shown == ["nodes"] and app.query_one("#panel-nodes", Panel).region.height > 30
        await pilot.press("z")
        assert all(p.display for p in app.query(Panel))
        await pilot.resize_terminal(200, 50)
        await pilot.pause()
        assert app.query_one("#panels").has_class("-wide")


def test_help_snapshot(snap_compare: Any, frozen_clock: None) -> None:
    assert snap_compare(_app(), terminal_size=(120, 40), press=["question_mark"])
