"""K3s upgrades against a lab of their own: the version rules refuse before anything changes, a blocking
PodDisruptionBudget is named in the plan, all three nodes go to the next patch over SSH with the HA patches
restored after the server's restart, the next minor through system-upgrade-controller Plans, and a node
whose new K3s does not start goes back to its version (exit 4).

One lab, in this order (each upgrade starts where the previous left the cluster); the journal and reports
live in a state directory of the module's own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input

from console.journal import Journal
from lab.cli import control
from lab.state import LabState
from tests.conftest import kubectl, kubectl_json, opsconsole, own_lab

PATCH, MINOR, NEXT = "v1.34.5+k3s1", "v1.35.2+k3s1", "v1.35.3+k3s1"


@pytest.fixture(scope="module")
def up_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    with own_lab(tmp_path_factory, "upgrade-lab", speed=0.1) as state:
        yield state


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("upgrade-state")


def _upgrade(lab: LabState, state: Path, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    env = {**os.environ, "XDG_STATE_HOME": str(state)}
    proc = opsconsole(
        "--config", lab.files["console_config"], "--action", "upgrade", *args, "--json",
        env=env, check=False, timeout=600,
    )  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events, proc.stdout + proc.stderr


def _finished(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in events if e.get("kind") == "Finished")


def _versions(lab: LabState) -> dict[str, str]:
    items = kubectl_json(lab, "get", "nodes")["items"]
    return {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"] for n in items}


def _schedulable(lab: LabState) -> dict[str, bool]:
    items = kubectl_json(lab, "get", "nodes")["items"]
    return {n["metadata"]["name"]: not n["spec"].get("unschedulable") for n in items}


def _agents_in_order(lab: LabState) -> tuple[str, str]:
    """The workers in the order an upgrade takes them: the one holding the CNPG primary last."""
    cluster = kubectl_json(lab, "get", "clusters.postgresql.cnpg.io", "-n", "postgres", "main-db")
    pod = kubectl_json(lab, "get", "pod", "-n", "postgres", cluster["status"]["currentPrimary"])
    last = pod["spec"]["nodeName"]
    first = next(n for n in ("k3s-w1", "k3s-w2") if n != last)
    return first, last


def _ssh(lab: LabState, host: str, command: str) -> str:
    proc = subprocess.run(
        ["ssh", "-F", lab.files["ssh_config"], host, command], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_version_rules_refuse_before_anything_changes(up_lab: LabState, state_dir: Path) -> None:
    before = _versions(up_lab)
    code, events, out = _upgrade(up_lab, state_dir, "--version", "v1.36.0+k3s1", "--yes")
    assert code == 3, out
    assert "skips a minor version" in _finished(events)["summary"]
    code, events, out = _upgrade(up_lab, state_dir, "--version", PATCH, "--nodes", "k3s-w1", "--yes")
    assert code == 3, out
    assert "newer than the server k3s-mgr" in _finished(events)["summary"]
    code, events, out = _upgrade(up_lab, state_dir, "--version", "v1.34.3+k3s1", "--yes")
    assert code == 3 and "--allow-downgrade" in _finished(events)["summary"], out
    assert _versions(up_lab) == before
    assert not Journal(state_dir / "opsconsole").recent(), "a refused upgrade journals nothing"


def test_the_installer_refuses_a_release_that_does_not_exist(up_lab: LabState) -> None:
    """The lab's get.k3s.io serves what install.sh does with a version GitHub has no release of."""
    command = "curl -sfL https://get.k3s.io | INSTALL_K3S_VERSION=v1.34.9+k3s1 sh -s - server"
    proc = subprocess.run(
        ["ssh", "-F", up_lab.files["ssh_config"], "k3s-mgr", command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and proc.stderr.strip() == "[ERROR]  Download failed", proc.stderr
    assert "releases/download/v1.34.9%2Bk3s1/sha256sum-arm64.txt" in proc.stdout
    assert _versions(up_lab)["k3s-mgr"] == "v1.34.4+k3s1"  # nothing changed, nothing restarted
    assert "k3s version v1.34.4+k3s1" in _ssh(up_lab, "k3s-mgr", "k3s --version")


def test_a_budget_that_would_block_a_drain_is_named_in_the_plan(up_lab: LabState, state_dir: Path) -> None:
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "docfast-no-disruption", "namespace": "docfast"},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "docfast"}}},
    }
    manifest = state_dir / "pdb.json"
    manifest.write_text(json.dumps(pdb))
    kubectl(up_lab, "create", "-f", str(manifest))
    try:
        code, events, out = _upgrade(up_lab, state_dir, "--version", PATCH, "--dry-run")
        assert code == 3, out
        plan = [e["message"] for e in events if e.get("kind") == "PlanItem"]
        assert any("docfast/docfast-no-disruption" in m and "forever" in m for m in plan), plan
        code, events, out = _upgrade(up_lab, state_dir, "--version", PATCH, "--yes")
        assert code == 3 and "docfast-no-disruption" in _finished(events)["summary"], out
    finally:
        kubectl(up_lab, "delete", "pdb", "-n", "docfast", "docfast-no-disruption")
    assert set(_versions(up_lab).values()) == {"v1.34.4+k3s1"}


def test_all_three_nodes_to_the_next_patch_over_ssh(up_lab: LabState, state_dir: Path) -> None:
    first, last = _agents_in_order(up_lab)
    code, events, out = _upgrade(up_lab, state_dir, "--version", PATCH, "--yes")
    done = _finished(events)
    assert code == 0, out
    report = done["report"]
    assert done["verdict"] == "PASS", report["slos"]
    assert _versions(up_lab) == dict.fromkeys(("k3s-mgr", "k3s-w1", "k3s-w2"), PATCH)
    assert all(_schedulable(up_lab).values())
    assert f"k3s version {PATCH}" in _ssh(up_lab, "k3s-w1", "k3s --version")
    # The server first; the worker holding the primary last, so the database switches over once.
    assert [n["node"] for n in report["nodes"]] == ["k3s-mgr", first, last]
    switched = [e for e in events if e.get("kind") == "Log" and "is the primary now" in e.get("message", "")]
    assert len(switched) == 1, switched
    assert all(
        n["state"] == "done" and set(n["timings"]) == {"drain", "install", "ready", "back"}
        for n in report["nodes"]
    )
    # K3s re-applied its packaged CoreDNS on the server's start: found, restored, and it holds.
    assert "coredns-spread" in {h["name"] for h in report["ha_lost"]}
    assert "coredns-spread" in report["ha_restored"] and report["ha_holds"] is True
    ha = opsconsole("--config", up_lab.files["console_config"], "--action", "ha", "--dry-run", check=False)
    assert ha.returncode == 0, ha.stdout + ha.stderr
    assert report["backup"], "a cluster backup ran first"
    entry = Journal(state_dir / "opsconsole").get(report["id"])
    assert entry is not None and entry.state == "done"
    keys = [s["data"].get("key") for s in entry.steps if s["status"] == "fault-applied"]
    for node in ("k3s-mgr", "k3s-w1", "k3s-w2"):
        assert f"cordon:{node}" in keys and f"k3s:{node}" in keys
    assert not entry.applied(), "every node's change was settled"
    print("timings per node:", {n["node"]: n["timings"] for n in report["nodes"]}, report["slos"])


def test_the_next_minor_through_system_upgrade_controller_plans(up_lab: LabState, state_dir: Path) -> None:
    code, events, out = _upgrade(up_lab, state_dir, "--version", MINOR, "--route", "suc", "--yes")
    done = _finished(events)
    assert code == 0, out
    assert _versions(up_lab) == dict.fromkeys(("k3s-mgr", "k3s-w1", "k3s-w2"), MINOR)
    assert all(_schedulable(up_lab).values())
    # The controller labelled each node with its Plan's hash (sha224); the run deleted the Plans once done.
    items = kubectl_json(up_lab, "get", "nodes")["items"]
    labels = {n["metadata"]["name"]: n["metadata"]["labels"] for n in items}
    assert len(labels["k3s-mgr"]["plan.upgrade.cattle.io/k3s-server"]) == 56
    assert (
        labels["k3s-w1"]["plan.upgrade.cattle.io/k3s-agent"]
        == labels["k3s-w2"]["plan.upgrade.cattle.io/k3s-agent"]
    )
    assert kubectl_json(up_lab, "get", "plans.upgrade.cattle.io", "-n", "system-upgrade")["items"] == []
    said = [e["message"] for e in events if e.get("kind") == "Log"]
    assert "Plans k3s-agent, k3s-server deleted" in said or "Plans k3s-server, k3s-agent deleted" in said, (
        said
    )
    assert done["report"]["ha_holds"] is True and "coredns-spread" in done["report"]["ha_restored"]
    assert done["report"]["backup"], "a cluster backup ran first on this route too"
    print("timings per node (suc):", {n["node"]: n["timings"] for n in done["report"]["nodes"]})


def test_a_node_whose_new_k3s_fails_goes_back_and_the_run_exits_4(up_lab: LabState, state_dir: Path) -> None:
    first, last = _agents_in_order(up_lab)
    control(up_lab, "POST", "/k3s/service", {"node": first, "upgrade_fails": True})
    try:
        code, events, out = _upgrade(up_lab, state_dir, "--version", NEXT, "--yes", "--force")
    finally:
        control(up_lab, "POST", "/k3s/service", {"node": first, "upgrade_fails": False})
    done = _finished(events)
    assert code == 4, out
    report = done["report"]
    assert report["stopped_at"] == f"{first} (agent)"
    states = {n["node"]: n["state"] for n in report["nodes"]}
    assert states == {"k3s-mgr": "done", first: "rolled-back", last: "pending"}
    assert _versions(up_lab) == {"k3s-mgr": NEXT, first: MINOR, last: MINOR}  # upgraded nodes stay
    assert all(_schedulable(up_lab).values())
    assert f"{first} back at v1.35.2+k3s1" in done["summary"]
    entry = Journal(state_dir / "opsconsole").get(report["id"])
    assert entry is not None and entry.state == "failed" and not entry.applied()


def test_a_console_killed_mid_upgrade_is_finished_by_recover(up_lab: LabState, state_dir: Path) -> None:
    """SIGKILL as the first worker's installer starts: recover puts it back at its version, uncordoned."""
    first, _ = _agents_in_order(up_lab)
    env = {**os.environ, "XDG_STATE_HOME": str(state_dir)}
    argv = ["--config", up_lab.files["console_config"], "--action", "upgrade", "--version", NEXT]
    proc = subprocess.Popen(
        [sys.executable, "-m", "opsconsole", *argv, "--yes", "--force", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline, seen = time.monotonic() + 120, []
        for line in proc.stdout:
            seen.append(json.loads(line) if line.startswith("{") else {})
            if seen[-1].get("kind") == "StepStarted" and seen[-1].get("step") == "install":
                assert first in seen[-1]["title"], seen[-1]  # k3s-mgr runs NEXT already
                break
            assert time.monotonic() < deadline, "the upgrade never reached the first worker's installer"
        else:
            raise AssertionError(f"the upgrade ended before the first worker's installer: {seen[-3:]}")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    (left,) = Journal(state_dir / "opsconsole").unfinished()
    assert left.action == "upgrade" and f"k3s:{first}" in {s["data"]["key"] for s in left.applied()}
    done = opsconsole(*argv[:2], "--action", "recover", "--yes", "--json", env=env, check=False, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert _versions(up_lab) == {"k3s-mgr": NEXT, "k3s-w1": MINOR, "k3s-w2": MINOR}
    assert all(_schedulable(up_lab).values())
    assert not Journal(state_dir / "opsconsole").unfinished()


def test_a_failed_controller_job_is_rolled_back_too(up_lab: LabState, state_dir: Path) -> None:
    control(up_lab, "POST", "/k3s/service", {"node": "k3s-w2", "upgrade_fails": True})
    try:
        code, events, out = _upgrade(
            up_lab, state_dir, "--version", NEXT, "--route", "suc", "--yes", "--force"
        )
    finally:
        control(up_lab, "POST", "/k3s/service", {"node": "k3s-w2", "upgrade_fails": False})
    assert code == 4, out
    report = _finished(events)["report"]
    assert {n["node"]: n["state"] for n in report["nodes"]} == {
        "k3s-mgr": "unchanged", "k3s-w1": "done", "k3s-w2": "rolled-back",
    }  # fmt: skip
    assert _versions(up_lab) == {"k3s-mgr": NEXT, "k3s-w1": NEXT, "k3s-w2": MINOR}
    assert all(_schedulable(up_lab).values())
    plans = kubectl_json(up_lab, "get", "plans.upgrade.cattle.io", "-n", "system-upgrade")["items"]
    assert plans == [], "the Plans are deleted first, so the controller starts nothing more"


def test_a_server_whose_new_k3s_does_not_start_goes_back_without_its_api(
    up_lab: LabState, state_dir: Path
) -> None:
    """The server's new version fails: no API at all until the old version is installed again over SSH."""
    control(up_lab, "POST", "/k3s/service", {"node": "k3s-mgr", "upgrade_fails": True})
    try:
        code, events, out = _upgrade(up_lab, state_dir, "--version", "v1.36.0+k3s1", "--yes", "--force")
    finally:
        control(up_lab, "POST", "/k3s/service", {"node": "k3s-mgr", "upgrade_fails": False})
    assert code == 4, out
    report = _finished(events)["report"]
    assert report["stopped_at"] == "k3s-mgr (server)"
    assert {n["node"]: n["state"] for n in report["nodes"]} == {
        "k3s-mgr": "rolled-back", "k3s-w1": "pending", "k3s-w2": "pending",
    }  # fmt: skip
    assert _versions(up_lab) == {"k3s-mgr": NEXT, "k3s-w1": NEXT, "k3s-w2": MINOR}
    assert all(_schedulable(up_lab).values())


async def test_the_tui_upgrades_from_the_nodes_panel(
    up_lab: LabState, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`K` on a node's row: the runner screen's form, the plan (k3s-w2 is the one behind), the version
    typed to confirm, and the run to its PASS."""
    from console.config import load_config
    from screens.app import Dashboard
    from screens.panels import Panel
    from screens.runner import RunnerScreen
    from tests.test_dashboard import _until

    monkeypatch.setenv("XDG_STATE_HOME", str(state_dir))
    app = Dashboard(load_config(Path(up_lab.files["console_config"])))
    async with app.run_test(size=(160, 50)) as pilot:
        nodes = app.query_one("#panel-nodes", Panel)
        await _until(pilot, lambda: nodes.table.row_count == 3, 30, "three nodes")
        nodes.table.focus()
        await pilot.press("K")
        await _until(pilot, lambda: isinstance(app.screen, RunnerScreen), 10, "the runner screen")
        screen = app.screen
        assert isinstance(screen, RunnerScreen)
        screen.query_one("#param-version", Input).value = NEXT
        await _until(pilot, lambda: screen.word == NEXT, 30, "the version as the confirmation word")
        await _until(
            pilot, lambda: screen._runner is not None and screen._runner.plan is not None, 60, "the plan"
        )
        runner = screen._runner
        assert runner is not None and runner.plan is not None
        planned = [i.message for i in runner.plan.items]
        assert any(m.startswith(f"k3s-w2 (agent): {MINOR} → {NEXT}") for m in planned), planned
        await pilot.press(*NEXT, "enter")
        await _until(pilot, lambda: screen.result is not None, 120, "the upgrade's end")
        assert screen.result is not None and screen.result.verdict == "PASS", screen.result
    assert _versions(up_lab) == dict.fromkeys(("k3s-mgr", "k3s-w1", "k3s-w2"), NEXT)
