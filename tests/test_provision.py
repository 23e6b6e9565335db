"""Provisioning (#9) on a lab that starts empty (`lab up --scenario empty`): an empty Hetzner project and a
Kubernetes API with no nodes.  The plan, the apply (Hetzner API, K3s over SSH, then the lab's manifests —
operators, database, DocFast — and the HA state), a second plan that shows no changes, what the `hcloud`
CLI and `kubectl` see, the dashboard's verdict once DNS points at the new load balancer, and the lab's K3s
refusing a wrong join token.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.state import LabState, read_state
from tests.conftest import kubectl_json, lab_hcloud_json, opsconsole, run_action, wait_for


@pytest.fixture(scope="module")
def empty_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    lab_dir = tmp_path_factory.mktemp("empty-lab")
    opsconsole("lab", "up", "--dir", str(lab_dir), "--fast", "--scenario", "empty")
    state = read_state(lab_dir)
    assert state is not None
    try:
        yield state
    finally:
        opsconsole("lab", "down", "--dir", str(lab_dir))


@pytest.fixture(scope="module")
def state_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path_factory.mktemp("provision-state"))}


def _provision(lab: LabState, env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    return run_action(lab, "provision", *args, state=Path(env["XDG_STATE_HOME"]))


def _hcloud(lab: LabState, tmp: Path, *args: str) -> Any:
    return lab_hcloud_json(lab, tmp, *args)


def test_plan_apply_converge_on_an_empty_project(
    empty_lab: LabState, state_env: dict[str, str], tmp_path: Path
) -> None:
    code, events, output = _provision(empty_lab, state_env, "--plan")
    assert code == 0, output[-2000:]
    plan = events[-1]["report"]["changes"]
    assert {(c["kind"], c["op"]) for c in plan} == {
        ("ssh_key", "create"), ("network", "create"), ("firewall", "create"), ("placement_group", "create"),
        ("server", "create"), ("load_balancer", "create"), ("k3s", "create"), ("manifest", "create"),
    }  # fmt: skip
    assert len([c for c in plan if c["kind"] == "server"]) == 3
    manifests = {c["name"] for c in plan if c["kind"] == "manifest"}
    assert {"Deployment cnpg-system/cnpg-controller-manager", "Cluster postgres/main-db",
            "Pooler postgres/main-db-pooler", "Deployment docfast/docfast"} <= manifests  # fmt: skip

    code, events, output = _provision(empty_lab, state_env, "--yes")
    assert code == 0, output[-3000:]
    report = events[-1]["report"]
    assert 0 < report["hetzner_requests"] <= 100, report  # the budget is 3600/h; a provision spends ~60
    assert {"k3s k3s-mgr", "k3s k3s-w1", "k3s k3s-w2", "nodes ready", "manifests", "ha"} <= set(
        report["timings"]
    )
    applied = {e["step"] for e in events if e.get("kind") == "StepStarted"}
    assert {"10-operators", "20-database", "30-apps"} <= applied, applied
    token_file = Path(empty_lab.dir) / "nodes/k3s-mgr/fs/var/lib/rancher/k3s/server/node-token"
    token = token_file.read_text().strip()
    assert token and token not in output  # the join token travels on stdin, never printed

    code, events, output = _provision(empty_lab, state_env, "--plan")
    assert code == 0 and events[-1]["report"]["pending"] == 0, output[-2000:]

    # What the Debian hcloud CLI sees.
    servers = {s["name"]: s for s in _hcloud(empty_lab, tmp_path, "server", "list")}
    assert set(servers) == {"k3s-mgr", "k3s-w1", "k3s-w2"}
    assert {n: s["private_net"][0]["ip"] for n, s in servers.items()} == {
        "k3s-mgr": "10.0.1.5", "k3s-w1": "10.0.1.6", "k3s-w2": "10.0.1.7",
    }  # fmt: skip
    assert all(s["server_type"]["name"] == "cax11" for s in servers.values())
    # (`server list -o json` leaves the placement group out, and Debian's hcloud 1.30.3 answers
    # `placement-group describe -o json` with "got invalid JSON response" although the lab's body passes
    # the OpenAPI check — not chased further; `server describe` carries the group.)
    described = [_hcloud(empty_lab, tmp_path, "server", "describe", n) for n in servers]
    groups = {d["placement_group"]["name"] for d in described}
    assert groups == {"k3s-spread"}
    lb = _hcloud(empty_lab, tmp_path, "load-balancer", "describe", "k3s-lb")
    checks = {(s["listen_port"], s["health_check"]["interval"], s["health_check"]["timeout"],
               s["health_check"]["retries"]) for s in lb["services"]}  # fmt: skip
    assert checks == {(80, 15, 10, 3), (443, 15, 10, 3)}
    assert {t["server"]["id"] for t in lb["targets"]} == {servers["k3s-w1"]["id"], servers["k3s-w2"]["id"]}
    assert all(t["use_private_ip"] for t in lb["targets"])
    assert lb["private_net"][0]["ip"] == "10.0.1.4"

    # What kubectl sees: three Ready nodes of the seed's version, the server tainted.
    nodes = {n["metadata"]["name"]: n for n in kubectl_json(empty_lab, "get", "nodes")["items"]}
    assert set(nodes) == {"k3s-mgr", "k3s-w1", "k3s-w2"}
    assert all(n["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4+k3s1" for n in nodes.values())
    assert [t["key"] for t in nodes["k3s-mgr"]["spec"].get("taints", [])] == [
        "node-role.kubernetes.io/control-plane"
    ]
    # The workloads: the database cluster healthy, DocFast on both workers, the HA state applied.
    cluster = kubectl_json(empty_lab, "get", "clusters.postgresql.cnpg.io", "-n", "postgres", "main-db")
    assert cluster["status"]["phase"] == "Cluster in healthy state"
    pods = kubectl_json(empty_lab, "get", "pods", "-n", "docfast", "-l", "app=docfast")["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {"k3s-w1", "k3s-w2"}

    # The load balancer's targets turn healthy once the packaged Traefik runs on the workers.
    wait_for(
        lambda: all(
            h["status"] == "healthy"
            for t in _hcloud(empty_lab, tmp_path, "load-balancer", "describe", "k3s-lb")["targets"]
            for h in t["health_status"]
        ),
        60,
        "healthy load-balancer targets",
        interval=1.0,
    )


def test_a_wrong_join_token_is_refused(empty_lab: LabState) -> None:
    proc = subprocess.run(
        ["ssh", "-F", empty_lab.files["ssh_config"], "k3s-w2",
         "curl -sfL https://get.k3s.io | K3S_URL=https://10.0.1.5:6443 K3S_TOKEN=K10wrong sh -s - agent"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0 and "failed to validate token" in proc.stderr, proc.stderr


def test_dashboard_healthy_once_dns_points_at_the_new_load_balancer(
    empty_lab: LabState, state_env: dict[str, str], tmp_path: Path
) -> None:
    """The provisioned cluster as the dashboard's snapshot judges it: the new load balancer has a new
    address, so DNS is the one critical finding until the operator points the records at it (the lab's
    registrar: `lab dns`); then it is healthy — database, probes, HA, certificates, backups."""

    def status() -> dict[str, Any]:
        proc = opsconsole("--config", empty_lab.files["console_config"], "--action", "status", "--json",
                          env=state_env, check=False)  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr[-2000:]
        doc: dict[str, Any] = json.loads(proc.stdout)
        return doc

    before = status()
    assert {f["code"] for f in before["findings"] if f["severity"] == "critical"} == {"dns-not-load-balancer"}
    ip = _hcloud(empty_lab, tmp_path, "load-balancer", "describe", "k3s-lb")["public_net"]["ipv4"]["ip"]
    for host in ("docfast.dev", "staging.docfast.dev"):
        opsconsole("lab", "dns", "--dir", empty_lab.dir, host, "A", ip)
    after = wait_for(lambda: (s := status())["healthy"] and s, 60, "a healthy verdict", interval=1.0)
    assert not [f for f in after["findings"] if f["severity"] == "critical" or f["code"] == "ha-drift"]
    assert after["database"]["phase"] == "Cluster in healthy state"
    assert all(p["ok"] for p in after["probes"]) and all(d["ok"] or d["type"] == "A" for d in after["dns"])
    assert {c["name"] for c in after["certificates"] if c["ready"]} == {
        "docfast.dev-tls", "staging.docfast.dev-tls",
    }  # fmt: skip
    assert all(not b["overdue"] and b["error"] is None for b in after["backups"])
