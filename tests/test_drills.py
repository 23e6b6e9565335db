"""Failover drills against a lab of their own (fast mode): every scenario to PASS headless and from the TUI,
HTTP downtime against the lab's ground truth, refusals (replica lag, a second console), a console killed
mid-drill and recovered, an abort during the outage.

Each drill leaves the cluster at steady state (that is what the drill itself waits for), so the next test
starts from a healthy cluster; a test that breaks that fails the next preflight loudly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from textual.widgets import Static

from console.config import load_config
from lab.cli import control
from lab.state import LabState
from screens.app import Dashboard
from screens.drill import DrillScreen
from screens.reports import ReportScreen, ReportsScreen
from tests.conftest import ROOT, edited_config, kubectl_json, opsconsole, own_lab, wait_for

SCENARIOS = ["node-down", "node-drain", "db-switchover", "db-primary-kill", "pooler-kill"]


@pytest.fixture(scope="module")
def drill_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    with own_lab(tmp_path_factory, "drill-lab") as state:
        yield state


@pytest.fixture(scope="module")
def drill_config(drill_lab: LabState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    def quick(raw: dict[str, Any]) -> None:  # PostgreSQL asked every second; a lag bound a test can pass
        raw["database"].update({"poll_interval_s": 1, "max_replica_lag_bytes": 1024 * 1024})
        raw["drill"]["hetzner_poll_s"] = 2  # the servers' power seen within 2 s of the lab's (x0.2) actions

    return edited_config(drill_lab, tmp_path_factory, "drill-config", quick)


@pytest.fixture()
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A journal and reports of this test's own (for in-process consoles and subprocesses alike)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "opsconsole"


def _drill(config: Path, *args: str, timeout: float = 400) -> tuple[int, list[dict[str, Any]], str]:
    proc = opsconsole(
        "--config", str(config), "--action", "drill", *args, "--json", check=False, timeout=timeout
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events, proc.stdout + proc.stderr


def _secrets(lab: LabState) -> list[str]:
    """Every secret the lab holds (tokens, the superuser password): none may reach output or reports."""
    out = [p.read_text().strip() for p in (Path(lab.dir) / "secrets").iterdir() if p.is_file()]
    su = kubectl_json(lab, "get", "secret", "-n", "postgres", "main-db-superuser")
    import base64

    out.append(base64.b64decode(su["data"]["password"]).decode())
    return [s for s in out if len(s) >= 8]


def _truth_outage(lab: LabState, since: float, until: float, host: str) -> float:
    """The longest run of failed requests to ``host`` through the load balancer, as the lab saw them."""
    rows = [r for r in control(lab, "GET", f"/truth?since={since}")["lb_requests"] if r.get("host") == host]
    rows = sorted((r for r in rows if r["at"] <= until), key=lambda r: r["at"])
    longest, start = 0.0, None
    for r in rows:
        if not r["ok"] and start is None:
            start = r["at"]
        elif r["ok"] and start is not None:
            longest = max(longest, r["at"] - start)
            start = None
    return longest


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_headless_drill_passes(
    drill_lab: LabState, drill_config: Path, state_dir: Path, scenario: str
) -> None:
    started = time.time()
    code, events, output = _drill(drill_config, "--scenario", scenario, "--yes")
    finished = events[-1]
    assert finished["kind"] == "Finished", output[-3000:]
    assert (code, finished["verdict"]) == (0, "PASS"), output[-5000:]
    report = finished["report"]
    path = Path(finished["report_path"])
    assert path.exists() and path.with_suffix(".md").exists()
    assert path.parent == state_dir / "reports"
    # Every probe ran every 0.5 s from before the fault to after the recovery.
    # (A write may fail while the primary moves: PgBouncer refuses logins for server_login_retry after one
    # to the stopping primary failed, as on the cluster.)
    ran = {p: c["ok"] + c["failed"] for p, c in report["probes"].items()}
    assert ran["http-prod"] >= 6 and ran["db-write"] >= 6, report["probes"]
    assert report["probes"]["http-prod"]["ok"] >= 1 and report["probes"]["db-write"]["ok"] >= 1
    assert {s["slo"] for s in report["slos"]} >= {"longest HTTP outage (prod)", "recovered to steady state"}
    assert report["before"]["nodes"] == report["after"]["nodes"]  # all Ready again, none cordoned
    kinds = {e["kind"] for e in events}
    assert {"Check", "StepStarted", "StepFinished", "ProbeSample", "Observation"} <= kinds
    text = output + path.read_text() + path.with_suffix(".md").read_text()
    for secret in _secrets(drill_lab):
        assert secret not in text
    if scenario == "node-down":
        # The measured HTTP downtime agrees with the lab's own record of the same run, within 0.5 s.
        measured = next(s["measured"] for s in report["slos"] if s["slo"] == "longest HTTP outage (prod)")
        truth = _truth_outage(drill_lab, started, report["finished"], "docfast.dev")
        assert measured > 0 and abs(measured - truth) <= 0.5, (measured, truth)
    if scenario in ("db-switchover", "db-primary-kill"):
        assert report["before"]["primary"] != report["after"]["primary"]
    journal = (state_dir / "audit.log").read_text().splitlines()
    assert json.loads(journal[-1])["event"] == "finish" and json.loads(journal[-1])["state"] == "done"


def test_dry_run_prints_the_plan_and_changes_nothing(
    drill_lab: LabState, drill_config: Path, state_dir: Path
) -> None:
    code, events, output = _drill(drill_config, "--scenario", "node-down", "--target", "k3s-w1", "--dry-run")
    assert code == 0, output
    plan = events[-1]["report"]["plan"]
    assert "k3s-w1 hosts" in plan["blast_radius"] and "docfast" in plan["blast_radius"]
    assert not (state_dir / "reports").exists()
    code, _, output = _drill(drill_config, "--scenario", "node-down", "--target", "k3s-w1")
    assert code == 2 and "--yes" in output  # no confirmation, no drill


def test_refused_while_the_replica_lags(drill_lab: LabState, drill_config: Path, state_dir: Path) -> None:
    cluster = kubectl_json(drill_lab, "get", "clusters.postgresql.cnpg.io", "-n", "postgres", "main-db")
    replica = next(n for n in cluster["status"]["instanceNames"] if n != cluster["status"]["currentPrimary"])
    db = control(drill_lab, "GET", "/db")
    control(drill_lab, "POST", "/fault/db", {"receiver": replica, "paused": True})
    try:
        with psycopg.connect(
            host="127.0.0.1",
            port=next(iter(db["poolers"].values())),
            user="docfast",
            password="docfast",
            dbname="docfast",
        ) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS lag_probe (v text)")
            conn.execute("INSERT INTO lag_probe SELECT md5(i::text) FROM generate_series(1, 100000) i")
        code, events, output = _drill(drill_config, "--scenario", "db-switchover", "--yes", "--force")
        assert code == 3, output[-3000:]
        lag = next(e for e in events if e["kind"] == "Check" and e["name"] == "replica-streaming")
        assert not lag["ok"] and lag["critical"] and replica in lag["why"]
        assert events[-1]["verdict"] == "REFUSED"
    finally:
        control(drill_lab, "POST", "/fault/db", {"receiver": replica, "paused": False})
    wait_for(
        lambda: _drill(drill_config, "--scenario", "pooler-kill", "--dry-run")[0] == 0,
        60,
        "the replica caught up",
    )


def _spawn_drill(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opsconsole",
            "--config",
            str(config),
            "--action",
            "drill",
            *args,
            "--yes",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
    )


@contextlib.contextmanager
def _drilling(config: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A headless drill running beside the test, killed at the end if it has not ended."""
    proc = _spawn_drill(config, *args)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def _read_until(proc: subprocess.Popen[str], pred: Any, timeout: float) -> list[dict[str, Any]]:
    assert proc.stdout is not None
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if line.startswith("{"):
            seen.append(json.loads(line))
            if pred(seen[-1]):
                return seen
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"the drill never got there: {seen[-5:]}")


def test_second_console_is_refused_while_a_drill_runs(
    drill_lab: LabState, drill_config: Path, state_dir: Path
) -> None:
    with _drilling(drill_config, "--scenario", "node-down", "--target", "k3s-w2") as first:
        _read_until(first, lambda e: e["kind"] == "StepStarted" and e["step"] == "fault", 120)
        code, events, output = _drill(drill_config, "--scenario", "pooler-kill", "--yes")
        assert code == 3, output[-3000:]
        lock = next(e for e in events if e["kind"] == "Check" and e["name"] == "lock-free")
        assert not lock["ok"] and "holds the cluster lock" in lock["why"] and "drill node-down" in lock["why"]
        rest, _ = first.communicate(timeout=400)
        assert first.returncode == 0, rest[-3000:]


def test_killed_console_mid_node_down_is_recovered(
    drill_lab: LabState, drill_config: Path, state_dir: Path
) -> None:
    with _drilling(drill_config, "--scenario", "node-down", "--target", "k3s-w2") as proc:
        _read_until(proc, lambda e: e["kind"] == "StepFinished" and e["step"] == "fault", 120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    servers = control(drill_lab, "GET", "/status")
    assert servers is not None
    # Every other action refuses until the unfinished drill is recovered …
    code, events, output = _drill(drill_config, "--scenario", "pooler-kill", "--yes")
    assert code == 3 and any(e.get("name") == "no-unfinished-action" and not e["ok"] for e in events), output[
        -2000:
    ]
    # … and recover powers the node on and waits for steady state.
    rec = opsconsole(
        "--config", str(drill_config), "--action", "recover", "--yes", "--json", check=False, timeout=400
    )
    assert rec.returncode == 0, rec.stdout[-3000:] + rec.stderr
    nodes = kubectl_json(drill_lab, "get", "nodes")["items"]
    w2 = next(n for n in nodes if n["metadata"]["name"] == "k3s-w2")
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in w2["status"]["conditions"])
    assert not w2["spec"].get("unschedulable")
    audit = [json.loads(line) for line in (state_dir / "audit.log").read_text().splitlines()]
    assert [a["event"] for a in audit if a["event"] in ("fault-applied", "rolled-back", "finish")][-3:] == [
        "fault-applied",
        "rolled-back",
        "finish",
    ]
    assert audit[-1]["state"] == "recovered"
    assert _drill(drill_config, "--scenario", "pooler-kill", "--dry-run")[0] == 0


async def _tui_drill(config: Path, scenario: str, abort_on_outage: bool = False) -> DrillScreen:
    from tests.test_dashboard import _until

    app = Dashboard(load_config(config))
    async with app.run_test(size=(160, 50)) as pilot:
        await _until(pilot, lambda: app.live is not None and app.snapshot is not None, 60, "live sources")
        # The node scenarios' default target is the primary's node: known once the database has reported.
        await _until(
            pilot, lambda: bool(app.snapshot and app.snapshot.database), 60, "the database's first answer"
        )
        await pilot.press("d")
        await _until(pilot, lambda: isinstance(app.screen, DrillScreen), 10, "the drill screen")
        screen = app.screen
        assert isinstance(screen, DrillScreen)
        for _ in range(SCENARIOS.index(scenario)):
            await pilot.press("down")
        await _until(pilot, lambda: screen.scenario == scenario, 10, f"{scenario} chosen")
        await _until(
            pilot, lambda: screen.allowed, 60, f"the preflight of {scenario} to pass ({screen.checks})"
        )
        await pilot.press("enter")
        assert screen.drill is not None and screen.drill.target
        await pilot.press(*screen.drill.target)
        await pilot.press("enter")
        await _until(pilot, lambda: screen.running, 10, "the drill running")
        if abort_on_outage:
            # Abort once the fault shows: the node seen NotReady or an HTTP probe failed.  Which one comes
            # first is the load balancer's round robin (a probe may never land on the dead target before
            # its health check takes it out), so either will do.
            drill = screen.drill
            assert drill is not None
            await _until(
                pilot,
                lambda: False in screen.samples["http-prod"] or "target_down" in drill.marks,
                120,
                "the fault to show",
            )
            await pilot.press("escape")
        await _until(pilot, lambda: screen.result is not None, 400, "the verdict")
        await pilot.press("escape")
        await _until(pilot, lambda: not isinstance(app.screen, DrillScreen), 10, "back on the dashboard")
        assert app.query_one("#last-drill").has_class("-shown")
        # D lists the saved reports, newest first; Enter reads one (its Markdown, as saved).
        await pilot.press("D")
        await _until(pilot, lambda: isinstance(app.screen, ReportsScreen), 10, "the reports screen")
        reports = app.screen
        assert isinstance(reports, ReportsScreen) and reports.reports
        assert reports.reports[0][1]["scenario"] == scenario
        await pilot.press("enter")
        await _until(pilot, lambda: isinstance(app.screen, ReportScreen), 10, "one report")
        assert str(app.screen.query_one("#report-path", Static).render()).endswith(".md")
        await pilot.press("escape", "escape")
        await _until(
            pilot, lambda: not isinstance(app.screen, ReportsScreen | ReportScreen), 10, "the dashboard"
        )
        return screen


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_tui_drill_passes(drill_config: Path, state_dir: Path, scenario: str) -> None:
    screen = await _tui_drill(drill_config, scenario)
    assert screen.result is not None and screen.result.verdict == "PASS", screen.result
    assert screen.result.report_path and Path(screen.result.report_path).exists()


async def test_abort_during_the_outage_rolls_back(
    drill_lab: LabState, drill_config: Path, state_dir: Path
) -> None:
    screen = await _tui_drill(drill_config, "node-down", abort_on_outage=True)
    assert screen.result is not None and screen.result.verdict == "ABORTED" and screen.result.exit_code == 4
    report = screen.result.report  # the typed report (actions/drill_report.py: DrillReport)
    steady = next(s for s in report.slos if s["slo"] == "recovered to steady state")
    assert steady["measured"] is not None and steady["measured"] <= steady["bound"]
    assert all(state == "Ready" for state in report.after["nodes"].values())
