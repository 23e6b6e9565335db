"""Actions on the row under the cursor (#20), against the lab: cordon and uncordon from the Nodes panel
with the typed confirmation, and the same actions headless with their exit codes — refused while another
console holds the cluster lock; a Deployment restarted and scaled and back."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from console.config import load_config
from console.lock import ClusterLock
from lab.cli import control
from lab.state import LabState
from tests.conftest import kubectl, kubectl_json, run_action, wait_for
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


def _staging_get(lab: LabState, path: str) -> int:
    req = urllib.request.Request(
        f"http://{lab.load_balancer['address']}{path}", headers={"Host": "staging.docfast.dev"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


async def _open(pilot: Any, app: Any, panel: str, key: str) -> Any:
    from screens.detail import DetailScreen
    from screens.panels import Panel

    p = app.query_one(f"#panel-{panel}", Panel)
    await _until(pilot, lambda: any(k.value == key for k in p.table.rows), 60, f"{key} in {panel}")
    row = next(i for i, k in enumerate(p.table.rows) if k.value == key)
    p.table.focus()
    p.table.move_cursor(row=row)
    await pilot.press("enter")
    await _until(pilot, lambda: isinstance(app.screen, DetailScreen), 10, f"the details of {key}")
    screen = app.screen
    await _until(pilot, lambda: screen.description is not None and screen.events, 30, f"{key}: read, events")
    return screen, row


async def test_enter_opens_details_with_events_and_a_pods_log_follows_requests(lab: LabState) -> None:
    from screens.app import Dashboard
    from screens.logs import LogScreen
    from screens.panels import Panel

    app = Dashboard(load_config(Path(lab.files["console_config"])))
    async with app.run_test(size=(160, 50)) as pilot:
        screen, row = await _open(pilot, app, "nodes", "k3s-w1")
        reasons = {r[2] for r in screen.events.values()}
        assert "RegisteredNode" in reasons, reasons
        text = screen.description.yaml()
        assert "name: k3s-w1" in text and "managedFields:" not in text.replace("# managedFields", "")
        titles = [s.title for s in screen.description.sections]
        assert "Conditions" in titles and any(t.startswith("Pods on this node") for t in titles), titles
        await pilot.press("escape")
        nodes = app.query_one("#panel-nodes", Panel)
        await _until(pilot, lambda: app.screen is not screen, 10, "back on the dashboard")
        assert nodes.table.cursor_row == row  # the cursor where it was

        screen, _ = await _open(pilot, app, "database", "main-db-1")
        assert screen.ref.kind == "Pod" and {"Scheduled", "Started"} & {r[2] for r in screen.events.values()}
        assert "Database instance" in [s.title for s in screen.description.sections]
        await pilot.press("y")  # the YAML is read whole from the API: the watch cache keeps a trimmed copy
        await _until(pilot, lambda: screen.yaml is not None, 10, "the pod's YAML read")
        assert "kube-api-access-" in screen.yaml and "kube-api-access-" not in screen.description.yaml()
        await pilot.press("escape")
        await _until(pilot, lambda: app.screen is not screen, 10, "back on the dashboard")
        await pilot.press("p")  # psql wants a real terminal: the test's has none, and says so
        said = lambda: " ".join(n.message for n in app._notifications)  # noqa: E731
        await _until(pilot, lambda: "cannot be handed over" in said(), 20, f"psql refused: {said()}")

        pod = next(
            p.name for p in (app.snapshot.pods if app.snapshot else ()) if p.namespace == "docfast-staging"
            and p.name.startswith("docfast-")
        )  # fmt: skip
        screen, _ = await _open(pilot, app, "pods", f"docfast-staging/{pod}")
        assert "Containers" in [s.title for s in screen.description.sections]
        await pilot.press("l")
        await _until(pilot, lambda: isinstance(app.screen, LogScreen), 10, "the log screen")
        logs = app.screen
        assert isinstance(logs, LogScreen)
        await _until(pilot, lambda: logs.state == "following", 10, "the log followed")
        mark = f"/version?mark={uuid.uuid4().hex}"
        await asyncio.to_thread(_staging_get, lab, mark)
        await _until(pilot, lambda: any(mark in line for line in logs.lines), 10, "the request in the log")
        await _until(pilot, lambda: logs.shown >= len(logs.lines), 5, "the lines on screen")
        await pilot.press("slash", *"mark=")
        await _until(pilot, lambda: logs.shown == sum("mark=" in ln for ln in logs.lines), 5, "the search")
        await pilot.press("escape")
        await _until(
            pilot, lambda: not logs.query_one("#logs-search").has_class("-shown"), 5, "search closed"
        )
        await pilot.press("escape")
        await _until(pilot, lambda: app.screen is screen, 10, f"back on the details, not {app.screen}")


def test_logs_headless_and_the_log_subresource_as_kubectl_sees_it(lab: LabState, tmp_path: Path) -> None:
    pods = kubectl_json(lab, "get", "pods", "-n", "docfast", "-l", "app=docfast")["items"]
    pod = pods[0]["metadata"]["name"]
    served = lambda: kubectl(lab, "logs", "-n", "docfast", pod).stdout.count("GET /health")  # noqa: E731
    wait_for(lambda: served() >= 4, 30, "a few requests served")
    code, events, output = _act(lab, tmp_path, "logs", "--target", f"docfast/{pod}", "--tail", "3")
    lines = [e["line"] for e in events if e["kind"] == "Output"]
    assert code == 0 and len(lines) == 3 and all("GET /health" in ln for ln in lines), output[-2000:]
    code, _, output = _act(lab, tmp_path, "logs", "--target", f"docfast/{pod}", "--container", "nope")
    assert code == 3 and f"container nope is not valid for pod {pod}" in output, output[-2000:]
    code, _, output = _act(lab, tmp_path, "logs", "--target", f"docfast/{pod}", "--previous")
    assert code == 3 and "previous terminated container" in output and "Traceback" not in output
    code, _, output = _act(lab, tmp_path, "logs", "--target", f"docfast/{pod}", "--since", "5 minutes")
    assert code == 2 and "--since takes a duration" in output
    code, events, _ = _act(lab, tmp_path, "logs", "--target", "postgres/main-db-1", "--since", "1h")
    said = [e["line"] for e in events if e["kind"] == "Output"]
    assert code == 0 and any(ln.startswith("INFO instance-manager: ") for ln in said), said  # JSON, pretty

    # The real kubectl against the same subresource: a crashed run's previous log, a waiting container.
    control(lab, "POST", "/fault/pod", {"kind": "crash"})
    control(lab, "POST", "/fault/pod", {"kind": "bad-image"})
    try:

        def fault(kind: str) -> dict[str, Any]:
            return next(p for p in _fault_pods(lab) if p["metadata"]["name"].startswith(f"fault-{kind}-"))

        wait_for(
            lambda: (
                len(_fault_pods(lab)) == 2
                and fault("crash")["status"]["containerStatuses"][0].get("restartCount", 0) >= 2
            ),
            30,
            "a crash-looping container",
        )
        crashed = fault("crash")["metadata"]["name"]
        prev = kubectl(lab, "logs", "-n", "docfast-staging", crashed, "--previous").stdout
        assert "ECONNREFUSED" in prev, prev
        waiting = kubectl(
            lab, "logs", "-n", "docfast-staging", fault("bad-image")["metadata"]["name"], check=False
        )
        assert (
            waiting.returncode != 0
            and "is waiting to start: trying and failing to pull image" in waiting.stderr
        )
        stamped = kubectl(lab, "logs", "-n", "docfast", pod, "--tail", "1", "--timestamps").stdout
        assert stamped.split(" ", 1)[0].endswith("Z") and "T" in stamped.split(" ", 1)[0], stamped
    finally:
        for kind in ("crash", "bad-image"):
            control(lab, "POST", "/fault/pod", {"kind": kind, "clear": True})
        wait_for(lambda: not _fault_pods(lab), 60, "the fault pods gone")


async def test_psql_reaches_the_primary_through_the_tunnel_and_keeps_the_password_out_of_argv(
    lab: LabState,
) -> None:
    import os

    from console.psql import open_psql
    from console.sources.kube import api_client

    config = load_config(Path(lab.files["console_config"]))
    api = await api_client(config.kubernetes.kubeconfig, config.kubernetes.context)
    session = await open_psql(api, config, dict(os.environ))
    try:
        proc = await asyncio.create_subprocess_exec(
            *session.argv, "-Atc", "select pg_is_in_recovery(), current_user",
            env=session.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await session.close()
        await api.close()
    assert proc.returncode == 0 and out.decode().strip() == "f|postgres", err.decode()
    assert session.env["PGPASSWORD"] and session.env["PGPASSWORD"] not in " ".join(session.argv)
    assert "PGPASSWORD" not in repr(session)
