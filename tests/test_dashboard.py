"""The Textual dashboard against the lab, through Pilot: panels fill from live sources and follow events."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from console.config import load_config
from lab.state import LabState
from screens.app import Dashboard
from screens.panels import Panel
from tests.conftest import kubectl


async def _until(pilot, predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


def _rows(app: Dashboard, panel: str) -> dict[str, list[str]]:
    table = app.query_one(f"#panel-{panel}", Panel).table
    return {key.value: [str(c) for c in table.get_row(key)] for key in table.rows}  # type: ignore[misc]


async def test_panels_fill_and_follow_a_pod_change(lab: LabState) -> None:
    app = Dashboard(load_config(Path(lab.files["console_config"])))
    async with app.run_test(size=(160, 60)) as pilot:
        banner = str(app.query_one("#banner").render())
        assert "LAB" in banner and "context admin" in banner
        await _until(pilot, lambda: len(_rows(app, "nodes")) == 3, 30, "three nodes")
        await _until(pilot, lambda: len(_rows(app, "lb")) == 2, 30, "load-balancer targets")
        await _until(
            pilot,
            lambda: any(r[1] == "primary" for r in _rows(app, "database").values()),
            60,
            "the database primary",
        )
        assert all(r[1] == "Ready" for r in _rows(app, "nodes").values())
        assert {r[0] for r in _rows(app, "lb").values()} == {"k3s-w1", "k3s-w2"}
        assert any("weak-db-credentials" in k or "no-pdbs" in k for k in _rows(app, "findings"))
        # A change made by another client reaches the cell by event: scale staging to 2 and back.
        kubectl(lab, "scale", "deploy/docfast", "-n", "docfast-staging", "--replicas=2")
        await _until(
            pilot,
            lambda: _rows(app, "workloads")["docfast-staging/docfast"][3] == "2/2",
            60,
            "staging to show 2/2 ready",
        )
        kubectl(lab, "scale", "deploy/docfast", "-n", "docfast-staging", "--replicas=1")
        await _until(
            pilot,
            lambda: _rows(app, "workloads")["docfast-staging/docfast"][3].endswith("/1"),
            60,
            "staging back to one replica",
        )
        await pilot.press("question_mark")
        await pilot.press("q")
        await asyncio.sleep(0)


async def test_forbidden_panels_for_the_deployer(lab: LabState, tmp_path: Path) -> None:
    text = Path(lab.files["console_config"]).read_text().replace('context = "admin"', 'context = "deployer"')
    path = tmp_path / "deployer.toml"
    path.write_text(text)
    app = Dashboard(load_config(path))
    async with app.run_test(size=(160, 60)) as pilot:
        nodes = app.query_one("#panel-nodes", Panel)
        await _until(pilot, lambda: nodes.state.value == "forbidden", 30, "the nodes panel to say forbidden")
        assert nodes.has_class("-forbidden")
        meta = str(nodes.query_one(".panel-meta").render())
        assert "forbidden" in meta
        await pilot.press("q")
