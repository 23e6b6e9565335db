"""Disaster recovery (#9): after the lab's "everything destroyed" fault — servers, load balancer, network,
the cluster's datastore, the database's disks; the Storage Box survives — `--action recover --yes` rebuilds
the project, restores the cluster and the databases from the latest Borg archives, and DocFast serves the
restored data through the new load balancer, with per-step timings in the report."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.state import LabState
from tests.conftest import lab_hcloud_json, opsconsole, own_lab, run_action, through_pooler

SEED_SERVER_IDS = {121365837, 121365839, 121365840}


@pytest.fixture(scope="module")
def dr_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    with own_lab(tmp_path_factory, "dr-lab") as state:
        yield state


def _recover(lab: LabState, tmp: Path, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    return run_action(lab, "recover", *args, state=tmp / "state", timeout=900)


def _servers(lab: LabState, tmp: Path) -> list[Any]:
    result: list[Any] = lab_hcloud_json(lab, tmp, "server", "list") or []
    return result


async def _tui_offers_the_rebuild(lab: LabState) -> None:
    """The palette's "recover" on a destroyed project opens the runner with the plan; a wrong word runs
    nothing."""
    from console.config import load_config
    from screens.app import Dashboard
    from tests.test_dashboard import _runner, _type_refused, _until

    app = Dashboard(load_config(Path(lab.files["console_config"])))
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await _runner(pilot, "recover")
        log = screen.query_one("#runner-log")
        shown = lambda: "".join(strip.text for strip in log.lines)  # noqa: E731
        await _until(pilot, lambda: "restore-cluster" in shown(), 10, "the plan shown")
        await _type_refused(pilot, screen, "docfast")  # not the cluster's name: nothing runs


async def test_recover_after_everything_was_destroyed(
    dr_lab: LabState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    code, events, output = _recover(dr_lab, tmp_path)
    assert code == 0 and "nothing to recover" in events[-1]["summary"], output[-2000:]

    opsconsole("lab", "fault", "--dir", dr_lab.dir, "destroy")
    assert _servers(dr_lab, tmp_path) == []
    code, events, output = _recover(dr_lab, tmp_path)
    assert code == 2 and "add --yes" in events[-1]["summary"], output[-2000:]  # a plan, nothing done
    await _tui_offers_the_rebuild(dr_lab)

    code, events, output = _recover(dr_lab, tmp_path, "--yes")
    assert code == 0 and events[-1]["verdict"] == "DONE", output[-5000:]
    report = events[-1]["report"]
    print(f"disaster recovery: {report['total_s']} s, steps {report['timings_s']}")
    steps = {"provision", "restore-cluster", "database-ready", "verify"}
    assert set(report["timings_s"]) == steps | {"restore-docfast", "restore-docfast_staging"}
    servers = _servers(dr_lab, tmp_path)
    assert {s["name"] for s in servers} == {"k3s-mgr", "k3s-w1", "k3s-w2"}
    assert not {s["id"] for s in servers} & SEED_SERVER_IDS  # fresh servers

    # DocFast serves through the load balancer, and the database holds the backup's rows.
    lb = dr_lab.load_balancer["address"]
    req = urllib.request.Request(f"http://{lb}/health", headers={"Host": "docfast.dev"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    with through_pooler(dr_lab, "docfast") as conn:
        row = conn.execute("SELECT count(*) FROM customers").fetchone()
    assert row is not None and row[0] == 500  # the seed's customers, from the dump
    assert report["rows_restored"]["docfast"] == 71000
