"""The twin behaves like the seed's cluster: power, eviction, the load balancer's view, drains and PDBs."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from lab.cli import control
from lab.state import LabState
from tests.conftest import env_file, hcloud, hcloud_json, kubectl, kubectl_json, wait_for


@pytest.fixture(scope="module")
def lab(fresh_lab: LabState) -> LabState:
    return fresh_lab


def _lb_get(lab: LabState, host: str, path: str = "/health", timeout: float = 5) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://{lab.load_balancer['address']}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError):
        return 0, None


def _node_ready(lab: LabState, name: str) -> str:
    node = kubectl_json(lab, "get", "node", name)
    return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")


def _target_status(env: dict[str, str], server_id: int) -> set[str]:
    lb = hcloud_json(env, "load-balancer", "describe", "k3s-lb")
    target = next(t for t in lb["targets"] if t["server"]["id"] == server_id)
    return {h["status"] for h in target["health_status"]}


def _ready_docfast_nodes(lab: LabState) -> list[str]:
    pods = kubectl_json(lab, "get", "pods", "-n", "docfast", "-l", "app=docfast")["items"]
    return sorted(
        p["spec"]["nodeName"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", [])
        )
    )


def test_health_through_the_load_balancer(lab: LabState) -> None:
    wait_for(lambda: _ready_docfast_nodes(lab) == ["k3s-w1", "k3s-w2"], 30, "prod pods ready on both workers")
    wait_for(lambda: _lb_get(lab, "docfast.dev")[0] == 200, 20, "docfast.dev/health through the LB")
    pods = {_lb_get(lab, "docfast.dev", "/version")[1]["pod"] for _ in range(6)}
    assert len(pods) == 2  # round robin reaches both replicas
    # Staging's single pod may still be starting (its readiness is probed like prod's): wait for it.
    wait_for(lambda: _lb_get(lab, "staging.docfast.dev")[0] == 200, 30, "staging.docfast.dev through the LB")
    status, body = _lb_get(lab, "staging.docfast.dev", "/version")
    assert status == 200 and body["namespace"] == "docfast-staging"


def test_poweroff_node_goes_notready_pods_move_lb_marks_unhealthy(lab: LabState) -> None:
    env = {**env_file(lab.files["hcloud_env"]), "HCLOUD_CONFIG": "/nonexistent/hcloud.toml"}
    wait_for(lambda: _ready_docfast_nodes(lab) == ["k3s-w1", "k3s-w2"], 30, "prod pods on both workers")
    t0 = time.time()
    hcloud(env, "server", "poweroff", "k3s-w2")
    # Node grace period is 50 s (x0.2 in fast mode): NotReady (Unknown) with the unreachable taints.
    wait_for(lambda: _node_ready(lab, "k3s-w2") == "Unknown", 30, "k3s-w2 NotReady")
    node = kubectl_json(lab, "get", "node", "k3s-w2")
    assert {(t["key"], t["effect"]) for t in node["spec"]["taints"]} == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }
    # DocFast prod tolerates unreachable for 10 s: its replacement runs on w1.
    wait_for(lambda: _ready_docfast_nodes(lab) == ["k3s-w1", "k3s-w1"], 30, "prod pod replaced on k3s-w1")
    wait_for(
        lambda: _target_status(env, 121365840) == {"unhealthy"}, 30, "LB marks k3s-w2 unhealthy", interval=0.5
    )
    assert _lb_get(lab, "docfast.dev")[0] == 200  # served from w1 only
    truth = control(lab, "GET", f"/truth?since={t0}")
    assert any(e["node"] == "k3s-w2" and not e["ready"] for e in truth["nodes"])
    assert any(e["server"] == 121365840 and e["status"] == "unhealthy" for e in truth["target_health"])
    # The pod evicted from the unreachable node stays Terminating until its kubelet returns.
    terminating = [
        p
        for p in kubectl_json(lab, "get", "pods", "-n", "docfast")["items"]
        if p["metadata"].get("deletionTimestamp")
    ]
    assert [p["spec"]["nodeName"] for p in terminating] == ["k3s-w2"]

    hcloud(env, "server", "poweron", "k3s-w2")
    wait_for(lambda: _node_ready(lab, "k3s-w2") == "True", 30, "k3s-w2 Ready again")
    assert "taints" not in kubectl_json(lab, "get", "node", "k3s-w2")["spec"]
    wait_for(
        lambda: _target_status(env, 121365840) == {"healthy"}, 30, "LB marks k3s-w2 healthy", interval=0.5
    )
    wait_for(
        lambda: (
            not [
                p
                for p in kubectl_json(lab, "get", "pods", "-n", "docfast")["items"]
                if p["metadata"].get("deletionTimestamp")
            ]
        ),
        30,
        "the terminating pod to finish",
    )


def test_drain_respects_pod_disruption_budgets(lab: LabState) -> None:
    wait_for(lambda: len(_ready_docfast_nodes(lab)) == 2, 30, "two ready prod pods")
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "docfast", "namespace": "docfast"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "docfast"}}},
    }
    import subprocess

    subprocess.run(
        ["kubectl", "--kubeconfig", lab.files["kubeconfig"], "apply", "-f", "-"],
        input=json.dumps(pdb),
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )
    wait_for(
        lambda: (
            kubectl_json(lab, "get", "pdb", "docfast", "-n", "docfast").get("status", {}).get("expectedPods")
            == 2
        ),
        20,
        "PDB status",
    )
    nodes = _ready_docfast_nodes(lab)
    blocked = kubectl(
        lab,
        "drain",
        nodes[0],
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=6s",
        "--pod-selector=app=docfast",
        check=False,
    )
    assert blocked.returncode != 0
    assert (
        "Cannot evict pod as it would violate the pod's disruption budget" in blocked.stderr + blocked.stdout
    )
    assert len(_ready_docfast_nodes(lab)) == 2  # nothing was evicted
    # kubectl leaves a node it failed to drain cordoned: uncordon it, or CNPG's primary budget would hold
    # the next drain (the primary could move nowhere but to a cordoned node).
    kubectl(lab, "uncordon", nodes[0])
    kubectl(lab, "delete", "pdb", "docfast", "-n", "docfast")
    drained = kubectl(
        lab, "drain", "k3s-w2", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s"
    )
    assert "node/k3s-w2 drained" in drained.stdout
    pods_on_w2 = [
        p
        for p in kubectl_json(lab, "get", "pods", "-A", "--field-selector", "spec.nodeName=k3s-w2")["items"]
        if not p["metadata"].get("deletionTimestamp")
    ]
    assert {p["metadata"]["labels"].get("app.kubernetes.io/name") for p in pods_on_w2} == {"traefik"}
    assert "SchedulingDisabled" in kubectl(lab, "get", "node", "k3s-w2").stdout
    kubectl(lab, "uncordon", "k3s-w2")
    assert "SchedulingDisabled" not in kubectl(lab, "get", "node", "k3s-w2").stdout
