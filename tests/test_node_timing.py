"""The node lifecycle's clocks are those of the Kubernetes the lab claims to be (v1.34): a silent node
turns NotReady after the 50 s ``node-monitor-grace-period`` (looked at every 5 s) — and ``lab up`` takes
the K3s flag that tunes it, as the seed's server would be started with it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from lab.cli import control
from lab.state import LabState
from tests.conftest import kubectl_json, opsconsole, wait_for

SPEED = 0.1


def _not_ready_after(lab: LabState, node: str) -> tuple[float, float]:
    """When, in seconds of the lab's clock after the node's power-off, it turned NotReady: the bracket
    between the last look that still saw it Ready and the end of the first that saw it Unknown (kubectl's
    own time on this machine is not the lab's)."""

    def ready() -> str:
        obj = kubectl_json(lab, "get", "node", node)
        return str(next(c["status"] for c in obj["status"]["conditions"] if c["type"] == "Ready"))

    wait_for(lambda: ready() == "True", 30, f"{node} Ready")
    t0 = time.monotonic()
    control(lab, "POST", f"/servers/{node}/power", {"state": "off"})
    last_ready = t0
    while True:
        looked = time.monotonic()
        state = ready()
        if state == "Unknown":
            seen = time.monotonic()
            break
        last_ready = looked
        assert time.monotonic() - t0 < 60, f"{node} still {state} 60 s after its power-off"
    control(lab, "POST", f"/servers/{node}/power", {"state": "on"})
    wait_for(lambda: ready() == "True", 30, f"{node} Ready again")
    return (last_ready - t0) / SPEED, (seen - t0) / SPEED


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    from lab.state import read_state

    lab_dir = tmp_path_factory.mktemp("tuned")
    opsconsole(
        "lab", "up", "--dir", str(lab_dir), "--speed", str(SPEED), "--no-wait",
        "--kube-controller-manager-arg", "node-monitor-grace-period=20s",
        "--kube-apiserver-arg", "default-unreachable-toleration-seconds=60",
    )  # fmt: skip
    state = read_state(lab_dir)
    assert state is not None
    yield state
    opsconsole("lab", "down", "--dir", str(lab_dir))


@pytest.fixture(scope="module")
def stock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    from lab.state import read_state

    lab_dir = tmp_path_factory.mktemp("stock")
    opsconsole("lab", "up", "--dir", str(lab_dir), "--speed", str(SPEED), "--no-wait")
    state = read_state(lab_dir)
    assert state is not None
    yield state
    opsconsole("lab", "down", "--dir", str(lab_dir))


def test_a_silent_node_is_not_ready_after_the_grace_period(stock: LabState) -> None:
    before, after = _not_ready_after(stock, "k3s-w2")
    # The last renewal the controller saw is up to a lease interval (10 s) old at the power-off, and it
    # looks every 5 s, seeing a renewal up to 5 s late: NotReady 40 to 60 s after the power-off.
    assert after >= 40 and before <= 60, (
        f"NotReady between {before:.1f} and {after:.1f} s after the power-off"
    )


def test_lab_up_takes_k3s_controller_manager_flags(tuned: LabState) -> None:
    before, after = _not_ready_after(tuned, "k3s-w2")
    assert after >= 10 and before <= 30, f"NotReady between {before:.1f} and {after:.1f} s (grace 20 s)"
    server = kubectl_json(tuned, "get", "node", "k3s-mgr")
    args = json.loads(server["metadata"]["annotations"]["k3s.io/node-args"])
    assert "--kube-controller-manager-arg=node-monitor-grace-period=20s" in args
    pod = kubectl_json(tuned, "get", "pods", "-n", "kube-system", "-l", "k8s-app=metrics-server")["items"][0]
    tolerations = {t["key"]: t.get("tolerationSeconds") for t in pod["spec"]["tolerations"]}
    assert tolerations["node.kubernetes.io/unreachable"] == 60
    assert tolerations["node.kubernetes.io/not-ready"] == 300


def test_a_bad_flag_is_one_sentence(tmp_path_factory: pytest.TempPathFactory) -> None:
    lab_dir = tmp_path_factory.mktemp("bad-flag")
    proc = opsconsole(
        "lab", "up", "--dir", str(lab_dir), "--kube-controller-manager-arg", "node-monitor-grace-period=soon",
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "node-monitor-grace-period" in proc.stderr
