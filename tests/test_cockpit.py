"""Actions on the row under the cursor (#20), against the lab: cordon and uncordon from the Nodes panel
with the typed confirmation, and the same actions headless with their exit codes — refused while another
console holds the cluster lock; a Deployment restarted and scaled and back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from console.config import load_config
from console.lock import ClusterLock
from lab.cli import control
from lab.state import LabState
from tests.conftest import kubectl_json, run_action, wait_for
from tests.test_dashboard import _until


def _cordoned(lab: LabState, node: str) -> bool:
    return bool(kubectl_json(lab, "get", "node", node)["spec"].get("unschedulable"))


def _act(lab: LabState, tmp: Path, action: str, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    return run_action(lab, action, *args, state=tmp / "state", timeout=300)


async def test_cordon_and_uncordon_from_the_nodes_panel(
    lab: LabState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from screens.app import Dashboard
    from screens.panels import Panel
    from screens.runner import RunnerScreen

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    app = Dashboard(load_config(Path(lab.files["console_config"])))
    async with app.run_test(size=(160, 50)) as pilot:
        nodes = app.query_one("#panel-nodes", Panel)
        await _until(pilot, lambda: nodes.table.row_count == 3, 30, "three nodes")
        for verb, want in (("c", True), ("u", False)):
            nodes.table.focus()
            nodes.table.move_cursor(row=2)  # k3s-w2
            await pilot.press(verb)
            await _until(pilot, lambda: isinstance(app.screen, RunnerScreen), 10, "the runner screen")
            screen = app.screen
            assert isinstance(screen, RunnerScreen)
            await _until(pilot, lambda: screen.word == "k3s-w2", 30, "the row as the target")  # noqa: B023
            await pilot.press(*"k3s-w1", "enter")  # not the row's node: nothing runs
            await pilot.pause(0.2)
            assert screen.result is None and _cordoned(lab, "k3s-w2") is not want
            await pilot.press(*"k3s-w2", "enter")
            await _until(pilot, lambda: screen.result is not None, 60, f"{verb} done")  # noqa: B023
            assert screen.result is not None and screen.result.verdict == "DONE", screen.result
            assert _cordoned(lab, "k3s-w2") is want
            await pilot.press("escape")
            await _until(pilot, lambda: not isinstance(app.screen, RunnerScreen), 10, "back")


async def test_headless_cordon_is_refused_while_the_lock_is_held_and_runs_after(
    lab: LabState, tmp_path: Path
) -> None:
    from console.sources.kube import api_client

    config = load_config(Path(lab.files["console_config"]))
    api = await api_client(config.kubernetes.kubeconfig, config.kubernetes.context)
    lock = ClusterLock(
        api,
        config.drill.lock_namespace,
        config.drill.lock_name,
        "another@console pid 1",
        "drill node-down",
        60,
    )
    await lock.acquire()
    try:
        code, events, output = await asyncio.to_thread(
            _act, lab, tmp_path, "cordon", "--target", "k3s-w1", "--yes"
        )
        assert code == 3 and "holds the cluster lock" in output and not _cordoned(lab, "k3s-w1"), output[
            -2000:
        ]
    finally:
        await lock.release()
        await api.close()
    code, events, output = _act(lab, tmp_path, "cordon", "--target", "k3s-w1", "--yes")
    assert code == 0 and _cordoned(lab, "k3s-w1"), output[-2000:]
    code, events, output = _act(lab, tmp_path, "cordon", "--target", "k3s-w1", "--yes")
    assert code == 0 and events[-1]["verdict"] == "CLEAN", output[-2000:]  # cordoned already
    code, events, output = _act(lab, tmp_path, "uncordon", "--target", "k3s-w1")
    assert code == 2 and "add --yes" in events[-1]["summary"] and _cordoned(lab, "k3s-w1")
    code, events, output = _act(lab, tmp_path, "uncordon", "--target", "k3s-w1", "--yes")
    assert code == 0 and not _cordoned(lab, "k3s-w1"), output[-2000:]
    code, events, output = _act(lab, tmp_path, "cordon", "--target", "k3s-w9", "--yes")
    assert code == 3 and "no node k3s-w9" in events[-1]["summary"]


def _staging(lab: LabState) -> dict[str, Any]:
    result: dict[str, Any] = kubectl_json(lab, "get", "deploy", "docfast", "-n", "docfast-staging")
    return result


def test_a_deployment_scaled_and_restarted_and_a_pod_deleted(lab: LabState, tmp_path: Path) -> None:
    target = "docfast-staging/docfast"
    code, events, output = _act(lab, tmp_path, "scale", "--target", target, "--replicas", "2", "--yes")
    assert code == 0 and _staging(lab)["status"].get("readyReplicas") == 2, output[-2000:]
    code, events, output = _act(lab, tmp_path, "scale", "--target", target, "--replicas", "1", "--yes")
    assert code == 0 and _staging(lab)["spec"]["replicas"] == 1, output[-2000:]
    before = _staging(lab)["metadata"].get("generation", 0)
    code, events, output = _act(lab, tmp_path, "restart", "--target", target, "--yes")
    assert code == 0 and _staging(lab)["metadata"]["generation"] > before, output[-2000:]
    pods = kubectl_json(lab, "get", "pods", "-n", "docfast-staging", "-l", "app=docfast")["items"]
    name = next(p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp"))
    code, events, output = _act(
        lab, tmp_path, "delete-pod", "--target", f"docfast-staging/{name}", "--dry-run"
    )
    assert code == 0 and any("will make a new one" in e.get("message", "") for e in events), output[-2000:]
    code, events, output = _act(lab, tmp_path, "delete-pod", "--target", f"docfast-staging/{name}", "--yes")
    assert code == 0, output[-2000:]
    wait_for(lambda: _staging(lab)["status"].get("readyReplicas") == 1, 60, "staging back to one ready pod")


POD_FAULTS = {  # the lab's fault → what the pods panel shows and the finding it raises
    "crash": ("CrashLoopBackOff", "pod-crash-looping"),
    "oom": ("CrashLoopBackOff", "pod-oom-killed"),
    "bad-image": ("ImagePullBackOff", "pod-image-pull-failing"),
    "unschedulable": ("Pending: ", "pod-unschedulable"),
}


def _fault_pods(lab: LabState) -> list[dict[str, Any]]:
    pods = kubectl_json(lab, "get", "pods", "-n", "docfast-staging")["items"]
    return [p for p in pods if p["metadata"]["name"].startswith("fault-")]


async def test_each_pod_fault_shows_in_the_pods_panel_and_as_a_finding_naming_the_pod(lab: LabState) -> None:
    from screens.app import Dashboard
    from tests.test_dashboard import _rows

    for kind in POD_FAULTS:
        control(lab, "POST", "/fault/pod", {"kind": kind})
    app = Dashboard(load_config(Path(lab.files["console_config"])))
    try:
        async with app.run_test(size=(200, 50)) as pilot:

            def shown() -> dict[str, tuple[str, str]]:
                pods = {key: " ".join(row) for key, row in _rows(app, "pods").items()}
                findings = " | ".join(" ".join(row) for row in _rows(app, "findings").values())
                out = {}
                for kind, (reason, code) in POD_FAULTS.items():
                    key = next((k for k in pods if k.startswith(f"docfast-staging/fault-{kind}-")), None)
                    if key and reason in pods[key] and code in findings and key in findings:
                        out[kind] = (key, pods[key])
                return out

            await _until(pilot, lambda: len(shown()) == len(POD_FAULTS), 60, "every fault and its finding")
            rows = list(_rows(app, "pods"))
            assert all(k.startswith("docfast-staging/fault-") for k in rows[: len(POD_FAULTS)]), rows[:6]
    finally:
        for kind in POD_FAULTS:
            control(lab, "POST", "/fault/pod", {"kind": kind, "clear": True})
        wait_for(lambda: not _fault_pods(lab), 60, "the fault pods gone")
