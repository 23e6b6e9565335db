"""The Textual dashboard against the lab, through Pilot: panels fill from live sources and follow events."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from console.config import load_config
from lab.state import LabState
from screens.app import Dashboard
from screens.help import HelpScreen
from screens.panels import Panel
from tests.conftest import kubectl, kubectl_json


async def _until(pilot, predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            app = pilot.app
            seen = {p.panel_id: (p.state.value, p.error, _rows(app, p.panel_id)) for p in app.query(Panel)}
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; panels: {seen}")
        await pilot.pause(0.05)


async def _runner(pilot, action: str, timeout: float = 20):  # type: ignore[no-untyped-def]
    """Start ``action`` as the command palette does; the runner screen it opens."""
    from screens.runner import RunnerScreen

    app = pilot.app
    app.start_action(action)
    await _until(pilot, lambda: isinstance(app.screen, RunnerScreen), timeout, f"the {action} runner")
    screen = app.screen
    assert isinstance(screen, RunnerScreen)
    return screen


async def _type_refused(pilot, screen, word: str) -> None:  # type: ignore[no-untyped-def]
    """Type a word the runner must not accept: nothing runs (a short pause: nothing is what to wait for),
    and the input is cleared for the next attempt."""
    await pilot.press(*word, "enter")
    await pilot.pause(0.2)
    assert screen.result is None and not screen.running
    screen.query_one("#runner-confirm").value = ""


async def _until_streaming(pilot, app: Dashboard, what: str) -> None:  # type: ignore[no-untyped-def]
    """Until the Database panel shows a replica streaming, as PostgreSQL itself reports it."""
    await _until(pilot, lambda: any(r[4] == "streaming" for r in _rows(app, "database").values()), 60, what)


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
        # The findings panel shows the snapshot's findings (which ones depends on what earlier modules did
        # to this shared lab: a test's PDB or new password removes a finding, so none is named here).
        await _until(
            pilot,
            lambda: (
                bool(_rows(app, "findings"))
                and set(_rows(app, "findings"))
                == {f"{f.code}:{f.subject}" for f in (app.snapshot.findings if app.snapshot else ())}
            ),
            30,
            "the findings panel showing the snapshot's findings",
        )
        # A change made by another client reaches the cell by event: scale staging to 2 and back.  The
        # workloads panel answers on its own (its watch's first list), so its row is waited for first.
        staging = "docfast-staging/docfast"
        await _until(pilot, lambda: staging in _rows(app, "workloads"), 60, "the staging workload's row")
        kubectl(lab, "scale", "deploy/docfast", "-n", "docfast-staging", "--replicas=2")
        await _until(
            pilot,
            lambda: _rows(app, "workloads").get(staging, [""] * 4)[3] == "2/2",
            60,
            "staging to show 2/2 ready",
        )
        kubectl(lab, "scale", "deploy/docfast", "-n", "docfast-staging", "--replicas=1")
        await _until(
            pilot,
            lambda: _rows(app, "workloads").get(staging, [""] * 4)[3].endswith("/1"),
            60,
            "staging back to one replica",
        )
        await pilot.press("q")
        await asyncio.sleep(0)


async def test_every_panel_fills_from_its_source(lab: LabState) -> None:
    """Each panel's rows come from its own live source: watches, Hetzner, PostgreSQL over SSH, Borg, DNS."""
    app = Dashboard(load_config(Path(lab.files["console_config"])))
    async with app.run_test(size=(160, 60)) as pilot:
        await _until_streaming(pilot, app, "the replica streaming, as PostgreSQL reports it")
        primary = next(r for r in _rows(app, "database").values() if r[1] == "primary")
        assert primary[4].startswith("primary, timeline") and primary[5].startswith("LSN ")
        await _until(pilot, lambda: len(_rows(app, "backups")) == 2, 90, "both Borg repositories")
        await _until(
            pilot,
            lambda: all(r[3] == "ok" for r in _rows(app, "backups").values()),
            90,
            "fresh backups (the Storage Box seeds its history in the background)",
        )
        assert {r[0] for r in _rows(app, "backups").values()} == {"k3s-db", "k3s-cluster"}
        assert all("kept" in r[4] for r in _rows(app, "backups").values()), _rows(app, "backups")
        await _until(pilot, lambda: len(_rows(app, "ha")) == 4, 30, "the four HA patches")
        assert all(r[2] == "holds" for r in _rows(app, "ha").values()), _rows(app, "ha")
        await _until(pilot, lambda: len(_rows(app, "endpoints")) == 5, 30, "two probes and three DNS records")
        endpoints = _rows(app, "endpoints")
        assert (
            endpoints["dns:docfast.dev:A"][2] == "ok" and "load balancer" in endpoints["dns:docfast.dev:A"][3]
        )
        assert endpoints["probe:prod"][2] == "ok"
        await _until(pilot, lambda: len(_rows(app, "timeline")) > 5, 30, "events in the timeline")
        assert len(_rows(app, "certs")) == 2
        # Spread or stacked as the pods really are: a module before this one on the same lab may have
        # powered a worker off, and pods that moved do not move back by themselves.
        pods = kubectl_json(lab, "get", "pods", "-n", "docfast")["items"]
        homes = [
            p["spec"].get("nodeName")
            for p in pods
            if p["metadata"]["name"].startswith("docfast-") and not p["metadata"].get("deletionTimestamp")
        ]
        truth = "spread" if len(homes) > 1 and len(set(homes)) == len(homes) else "STACKED"
        await _until(
            pilot, lambda: _rows(app, "workloads")["docfast/docfast"][5] == truth, 10, f"docfast {truth}"
        )
        workloads = _rows(app, "workloads")
        assert workloads["kube-system/coredns"][4] == "mgr:1 w1:1 w2:1"
        await _until(
            pilot, lambda: all(p.state.value == "ok" for p in app.query(Panel)), 30, "every panel ok"
        )
        for panel in app.query(Panel):
            assert "s ago" in str(panel.query_one(".panel-meta").render())

        # "/" filters every panel at once; Escape clears it.
        await pilot.press("slash", *"k3s-w1")
        await _until(pilot, lambda: list(_rows(app, "nodes")) == ["k3s-w1"], 5, "the filter to leave k3s-w1")
        assert all("k3s-w1" in " ".join(r).lower() for r in _rows(app, "database").values())
        await pilot.press("enter", "escape")
        await _until(pilot, lambda: len(_rows(app, "nodes")) == 3, 5, "the filter cleared")

        # "?" shows help over the dashboard; Escape returns.
        await pilot.press("question_mark")
        await _until(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "the help screen")
        assert "filter" in str(app.screen.query_one("#help-text").render())
        await pilot.press("escape")
        await _until(pilot, lambda: not isinstance(app.screen, HelpScreen), 5, "help to close")

        # Number keys jump between panels.
        await pilot.press("3")
        assert app.focused is app.query_one("#panel-database", Panel).table

        # The command palette lists the actions and the panels.
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Status snapshot" in titles and "Go to Backups" in titles and "Filter rows" in titles
        await pilot.press("q")


async def test_forbidden_panels_for_the_deployer(lab: LabState, tmp_path: Path) -> None:
    text = Path(lab.files["console_config"]).read_text().replace('context = "admin"', 'context = "deployer"')
    path = tmp_path / "deployer.toml"
    path.write_text(text)
    app = Dashboard(load_config(path), read_only=True)
    async with app.run_test(size=(160, 60)) as pilot:
        assert "read-only" in str(app.query_one("#banner").render())
        nodes = app.query_one("#panel-nodes", Panel)
        await _until(pilot, lambda: nodes.state.value == "forbidden", 30, "the nodes panel to say forbidden")
        assert nodes.has_class("-forbidden")
        meta = str(nodes.query_one(".panel-meta").render())
        assert "forbidden" in meta
        # The deployer may not read the database's secrets: the replication panel says so, the app runs.
        database = app.query_one("#panel-database", Panel)
        await _until(pilot, lambda: database.state.value == "forbidden", 30, "the database panel forbidden")
        # Each panel reports on its own kinds' first answers; wait for the workloads' rather than race them.
        workloads = app.query_one("#panel-workloads", Panel)
        await _until(pilot, lambda: workloads.state.value != "pending", 30, "the workloads panel to answer")
        assert workloads.state.value in ("forbidden", "ok")
        await pilot.press("q")
