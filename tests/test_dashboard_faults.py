"""The dashboard reflects faults injected in the lab within its sources' intervals, and survives its
sources failing: panels go stale, say so, and recover — no traceback, no frozen app.

One lab of its own (these tests disturb it).  The console config is the lab's, with the slow sources'
intervals shortened (the behaviour under test is the same; only the clock is faster).
"""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import psycopg
import tomli_w

from console.config import load_config
from lab.cli import control
from lab.state import LabState
from screens.app import Dashboard
from screens.panels import Panel
from tests.conftest import opsconsole
from tests.test_dashboard import _rows, _until, _until_streaming


def _config(lab: LabState, tmp_path: Path) -> Path:
    raw: dict[str, Any] = tomllib.loads(Path(lab.files["console_config"]).read_text())
    raw["database"]["poll_interval_s"] = 1
    raw["database"]["max_replica_lag_bytes"] = 1024 * 1024
    raw["backups"]["poll_interval_s"] = 2
    raw["hetzner"]["poll_budget_fraction"] = 0.5  # a poll every 6 s instead of 30 s
    path = tmp_path / "console.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


def _fault(lab: LabState, *args: str) -> None:
    opsconsole("lab", "fault", "--dir", lab.dir, *args)


def _panel(app: Dashboard, name: str) -> Panel:
    return app.query_one(f"#panel-{name}", Panel)


def _probes_ok(app: Dashboard) -> bool:
    probes = [p for k, p in _rows(app, "endpoints").items() if k.startswith("probe:")]
    return len(probes) == 2 and all(p[2] == "ok" for p in probes)


def _findings(app: Dashboard) -> set[str]:
    return {k.split(":", 1)[0] for k in _rows(app, "findings")}


async def test_sources_failing_for_30_s_go_stale_then_recover(fresh_lab: LabState, tmp_path: Path) -> None:
    app = Dashboard(load_config(_config(fresh_lab, tmp_path)))
    async with app.run_test(size=(160, 60)) as pilot:
        await _until(pilot, lambda: len(_rows(app, "nodes")) == 3, 60, "three nodes")
        await _until(pilot, lambda: _panel(app, "lb").state.value == "ok", 60, "the load balancer")
        # The app answers /health only once its pooler is up; a fresh lab may still be starting it.
        await _until(pilot, lambda: _probes_ok(app), 60, "both health probes ok before the fault")
        failed_at = time.monotonic()
        _fault(fresh_lab, "kube", "--errors", "30", "--drop-watches")
        _fault(fresh_lab, "hetzner", "--errors", "30")
        await _until(pilot, lambda: _panel(app, "nodes").has_class("-stale"), 30, "the nodes panel stale")
        await _until(pilot, lambda: _panel(app, "lb").has_class("-stale"), 30, "the LB panel stale")
        # Stale panels keep their last rows and say how old they are.
        assert len(_rows(app, "nodes")) == 3 and len(_rows(app, "lb")) == 2
        assert "stale" in str(_panel(app, "nodes").query_one(".panel-meta").render())
        # Sources that did not fail keep going.
        assert app.store.sources["http"].state.value == "ok"
        assert _probes_ok(app), _rows(app, "endpoints")
        await _until(
            pilot,
            lambda: _panel(app, "nodes").state.value == "ok" and _panel(app, "lb").state.value == "ok",
            90,
            "both panels to recover",
        )
        assert time.monotonic() - failed_at >= 25  # recovered after the fault, not through it
        assert not _panel(app, "nodes").has_class("-stale")
        await pilot.press("q")


async def test_replica_lag_and_a_missed_backup_show(fresh_lab: LabState, tmp_path: Path) -> None:
    app = Dashboard(load_config(_config(fresh_lab, tmp_path)))
    async with app.run_test(size=(160, 60)) as pilot:
        await _until_streaming(pilot, app, "a streaming replica")
        replica = next(k for k, r in _rows(app, "database").items() if r[1] == "replica")
        db = control(fresh_lab, "GET", "/db")
        control(fresh_lab, "POST", "/fault/db", {"receiver": replica, "paused": True})
        try:
            # Writes the replica cannot follow: ~10 MiB of WAL through the pooler, as the app writes.
            pooler_port = next(iter(db["poolers"].values()))
            with psycopg.connect(
                host="127.0.0.1", port=pooler_port, user="docfast", password="docfast", dbname="docfast"
            ) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS lag_probe (v text)")
                conn.execute("INSERT INTO lag_probe SELECT md5(i::text) FROM generate_series(1, 100000) i")
            await _until(
                pilot,
                lambda: (
                    _rows(app, "database")[replica][4] != "streaming"
                    and "MiB" in _rows(app, "database")[replica][5]
                ),
                30,
                "the replica shown stopped and MiB behind",
            )
            await _until(pilot, lambda: "replica-lag" in _findings(app), 10, "a replica-lag finding")
            assert "replica-not-streaming" in _findings(app)
        finally:
            control(fresh_lab, "POST", "/fault/db", {"receiver": replica, "paused": False})
        await _until(
            pilot,
            lambda: _rows(app, "database")[replica][4] == "streaming" and "replica-lag" not in _findings(app),
            60,
            "the replica caught up",
        )

        await _until(
            pilot, lambda: _rows(app, "backups").get("k3s-db", [""] * 5)[3] == "ok", 90, "fresh backups"
        )
        _fault(fresh_lab, "storagebox", "miss", "k3s-db", "--hours", "12")
        await _until(pilot, lambda: _rows(app, "backups")["k3s-db"][3] == "OVERDUE", 30, "k3s-db overdue")
        assert "backup-overdue" in _findings(app)
        assert _rows(app, "backups")["k3s-cluster"][3] == "ok"
        # The lab's pg_dump CronJob runs (as at its next 6-hour tick): the repository is fresh again.
        _fault(fresh_lab, "storagebox", "run", "k3s-db")
        await pilot.press("r")  # look again at the slow sources now
        await _until(pilot, lambda: _rows(app, "backups")["k3s-db"][3] == "ok", 30, "k3s-db fresh again")
        assert "backup-overdue" not in _findings(app)
        await pilot.press("q")


async def test_a_node_powered_off_shows_everywhere(fresh_lab: LabState, tmp_path: Path) -> None:
    app = Dashboard(load_config(_config(fresh_lab, tmp_path)))
    async with app.run_test(size=(160, 60)) as pilot:
        await _until(pilot, lambda: len(_rows(app, "lb")) == 2, 60, "load-balancer targets")
        await _until(pilot, lambda: len(_rows(app, "nodes")) == 3, 60, "three nodes")
        _fault(fresh_lab, "power", "k3s-w2", "off")
        try:
            await _until(pilot, lambda: _rows(app, "nodes")["k3s-w2"][7] == "off", 30, "Hetzner status off")
            await _until(pilot, lambda: _rows(app, "nodes")["k3s-w2"][1] == "NotReady", 60, "k3s-w2 NotReady")
            await _until(
                pilot,
                lambda: "unhealthy" in " ".join(_rows(app, "lb")["121365840"]),
                60,
                "the k3s-w2 target unhealthy",
            )
            assert {"node-not-ready", "server-not-running", "lb-target-unhealthy"} <= _findings(app)
        finally:
            _fault(fresh_lab, "power", "k3s-w2", "on")
        await _until(pilot, lambda: _rows(app, "nodes")["k3s-w2"][1] == "Ready", 90, "k3s-w2 Ready again")
        await pilot.press("q")
