"""Replacing a worker (#9): `--action replace-node --target k3s-w2 --yes` on a lab of its own ends with a new
server ID, the node Ready, its load-balancer target healthy — and production answering every probe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.state import LabState
from tests.conftest import kubectl_json, lab_hcloud_json, opsconsole, run_action, start_lab, workloads_settled


@pytest.fixture(scope="module")
def replace_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    lab_dir = tmp_path_factory.mktemp("replace-lab")
    state = start_lab(lab_dir)
    try:
        workloads_settled(state)  # the replacement's preflight wants steady state
        yield state
    finally:
        opsconsole("lab", "down", "--dir", str(lab_dir))


def _run(lab: LabState, tmp: Path, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    return run_action(lab, "replace-node", *args, state=tmp / "state")


def _server(lab: LabState, tmp: Path, name: str) -> Any:
    return lab_hcloud_json(lab, tmp, "server", "describe", name)


def test_the_control_plane_node_is_refused(replace_lab: LabState, tmp_path: Path) -> None:
    code, events, output = _run(replace_lab, tmp_path, "--target", "k3s-mgr", "--yes")
    assert code == 3 and events[-1]["verdict"] == "REFUSED", output[-2000:]
    assert "restore-cluster" in events[-1]["summary"] and "Traceback" not in output


def test_replace_a_worker_without_failing_production(replace_lab: LabState, tmp_path: Path) -> None:
    before = _server(replace_lab, tmp_path, "k3s-w2")["id"]
    code, events, output = _run(replace_lab, tmp_path, "--target", "k3s-w2", "--yes")
    assert code == 0 and events[-1]["verdict"] == "PASS", output[-4000:]
    report = events[-1]["report"]
    print(f"replace-node k3s-w2: {report['total_s']} s, steps {report['timings']}, probes {report['probes']}")
    assert report["probes"]["http-prod"]["total"] > 10 and report["probes"]["http-prod"]["failed"] == 0
    after = _server(replace_lab, tmp_path, "k3s-w2")
    assert after["id"] != before and after["private_net"][0]["ip"] == "10.0.1.7"
    node = kubectl_json(replace_lab, "get", "node", "k3s-w2")
    assert not node["spec"].get("unschedulable")
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    lb = next(b for b in _lbs(replace_lab, tmp_path) if b["name"] == "k3s-lb")
    target = next(t for t in lb["targets"] if t["server"]["id"] == after["id"])
    assert {h["status"] for h in target["health_status"]} == {"healthy"}


def _lbs(lab: LabState, tmp: Path) -> list[Any]:
    result: list[Any] = lab_hcloud_json(lab, tmp, "load-balancer", "list")
    return result


async def test_tui_replace_node_takes_the_typed_worker(
    replace_lab: LabState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from textual.widgets import Select

    from console.config import load_config
    from screens.app import Dashboard
    from tests.test_dashboard import _runner, _type_refused, _until

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    app = Dashboard(load_config(Path(replace_lab.files["console_config"])))
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await _runner(pilot, "replace-node")
        await _until(pilot, lambda: bool(screen.query("#param-target")), 10, "the form")
        target = screen.query_one("#param-target", Select)
        target.value = "k3s-w2"  # the replica's node (the primary's costs a switchover blip)
        await _until(pilot, lambda: screen.word == "k3s-w2", 60, "the plan and the confirmation")
        await _type_refused(pilot, screen, "k3s-w1")  # not the chosen worker: nothing runs
        await pilot.press(*"k3s-w2", "enter")
        await _until(pilot, lambda: screen.result is not None, 300, "the replacement's result")
        # The choice reached the action (the probes' verdict is the headless test's business).
        assert screen.result is not None and "k3s-w2 replaced" in screen.result.summary, screen.result
