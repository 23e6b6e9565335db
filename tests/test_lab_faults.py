"""`opsconsole lab fault …` disturbs the cluster behind the console's back; Jobs, logs and K3s restarts."""

from __future__ import annotations

import json

import pytest

from lab.state import LabState
from tests.conftest import kubectl, kubectl_json, opsconsole, wait_for


@pytest.fixture(scope="module")
def lab(fresh_lab: LabState) -> LabState:
    return fresh_lab


def _fault(lab: LabState, *args: str) -> str:
    return opsconsole("lab", "fault", "--dir", lab.dir, *args).stdout


def test_kube_api_errors_then_clear(lab: LabState) -> None:
    _fault(lab, "kube", "--errors", "30")
    failed = kubectl(lab, "get", "nodes", check=False)
    assert failed.returncode != 0 and "InternalError" in failed.stderr
    _fault(lab, "kube", "--clear")
    assert "k3s-w1" in kubectl(lab, "get", "nodes").stdout


def test_kill_pod_is_replaced(lab: LabState) -> None:
    def staging_pod() -> str | None:
        pods = [
            p
            for p in kubectl_json(lab, "get", "pods", "-n", "docfast-staging")["items"]
            if p.get("status", {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        ]
        return pods[0]["metadata"]["name"] if pods else None

    victim = wait_for(staging_pod, 30, "a running staging pod")
    _fault(lab, "kill-pod", f"docfast-staging/{victim}")
    replacement = wait_for(lambda: (p := staging_pod()) and p != victim and p, 30, "a replacement pod")
    assert replacement != victim


def test_k3s_restart_resets_the_runtime_ha_patches(lab: LabState) -> None:
    before = kubectl_json(lab, "get", "deploy", "coredns", "-n", "kube-system")
    assert before["spec"]["replicas"] == 3 and "affinity" in before["spec"]["template"]["spec"]
    out = _fault(lab, "k3s", "restarted")
    assert "kube-system/coredns" in out and "cnpg-system/cnpg-controller-manager" in out
    after = kubectl_json(lab, "get", "deploy", "coredns", "-n", "kube-system")
    assert after["spec"]["replicas"] == 1 and "affinity" not in after["spec"]["template"]["spec"]
    operator = kubectl_json(lab, "get", "deploy", "cnpg-controller-manager", "-n", "cnpg-system")
    assert operator["spec"]["replicas"] == 1
    assert "topologySpreadConstraints" not in operator["spec"]["template"]["spec"]
    wait_for(
        lambda: (
            len(kubectl_json(lab, "get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"]) == 1
        ),
        30,
        "CoreDNS scaled down to the stock single replica",
    )


def test_k3s_stopped_on_a_node_makes_it_notready(lab: LabState) -> None:
    def ready(name: str) -> str:
        node = kubectl_json(lab, "get", "node", name)
        return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")

    _fault(lab, "k3s", "stop", "k3s-mgr")
    wait_for(lambda: ready("k3s-mgr") == "Unknown", 30, "k3s-mgr NotReady after its grace period")
    _fault(lab, "k3s", "start", "k3s-mgr")
    wait_for(lambda: ready("k3s-mgr") == "True", 30, "k3s-mgr Ready again")


def test_job_from_cronjob_completes_and_logs_are_served(lab: LabState) -> None:
    kubectl(lab, "create", "job", "--from=cronjob/main-db-backup", "manual-backup", "-n", "postgres")
    done = kubectl(
        lab, "wait", "--for=condition=Complete", "job/manual-backup", "-n", "postgres", "--timeout=60s"
    )
    assert "condition met" in done.stdout
    pod = kubectl_json(lab, "get", "pods", "-n", "docfast", "-l", "app=docfast")["items"][0]["metadata"][
        "name"
    ]
    logs = kubectl(lab, "logs", pod, "-n", "docfast").stdout
    assert "listening on :3000" in logs and "GET /health 200" in logs
    events = kubectl(lab, "get", "events", "-n", "docfast").stdout
    assert "Scheduled" in events and "Started" in events


def test_partition_and_db_faults_from_the_cli(lab: LabState) -> None:
    def ready(name: str) -> str:
        node = kubectl_json(lab, "get", "node", name)
        return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")

    _fault(lab, "partition", "k3s-mgr")
    wait_for(lambda: ready("k3s-mgr") == "Unknown", 30, "the partitioned node NotReady")
    _fault(lab, "partition", "k3s-mgr", "--heal")
    wait_for(lambda: ready("k3s-mgr") == "True", 30, "the healed node Ready")
    out = json.loads(_fault(lab, "db", "pause-receiver", "main-db-2"))
    assert out == {"receiver": "main-db-2", "paused": True}
    assert json.loads(_fault(lab, "db", "resume-receiver", "main-db-2"))["paused"] is False
    bad = opsconsole("lab", "fault", "--dir", lab.dir, "storagebox", "lock", check=False)
    assert bad.returncode == 1 and "needs a repository" in bad.stderr
