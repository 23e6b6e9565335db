"""kubectl against the Kubernetes twin, as against the seed's cluster."""

from __future__ import annotations

import subprocess
import time
from collections import Counter

import pytest

from lab.state import LabState
from tests.conftest import kubectl, kubectl_json, wait_for


@pytest.fixture(scope="module")
def lab(fresh_lab: LabState) -> LabState:
    """A lab of this module's own: the spread checked here is the seed's, undisturbed by other tests."""
    return fresh_lab


def _pods_by_app(lab: LabState) -> dict[str, list[str]]:
    pods = kubectl_json(lab, "get", "pods", "-A")["items"]
    out: dict[str, list[str]] = {}
    for p in pods:
        if p["metadata"].get("deletionTimestamp") or not p["spec"].get("nodeName"):
            continue
        owner = (p["metadata"].get("ownerReferences") or [{}])[0].get("name", "")
        app = f"{p['metadata']['namespace']}/{owner.rsplit('-', 1)[0] if owner.count('-') else owner}"
        out.setdefault(app, []).append(p["spec"]["nodeName"])
    return out


def _settled(lab: LabState) -> dict[str, list[str]]:
    def ready() -> dict[str, list[str]] | None:
        pods = kubectl_json(lab, "get", "pods", "-A")["items"]
        if len(pods) >= 17 and all(
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
            for p in pods
        ):
            return _pods_by_app(lab)
        return None

    return wait_for(ready, 30, "every seeded pod Ready", interval=0.3)


def test_nodes_ready_and_mgr_tainted(lab: LabState) -> None:
    table = kubectl(lab, "get", "nodes").stdout
    assert table.count(" Ready ") == 3, table
    nodes = {n["metadata"]["name"]: n for n in kubectl_json(lab, "get", "nodes")["items"]}
    assert set(nodes) == {"k3s-mgr", "k3s-w1", "k3s-w2"}
    assert nodes["k3s-mgr"]["spec"]["taints"] == [
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    ]
    assert "taints" not in nodes["k3s-w1"]["spec"]
    assert nodes["k3s-w1"]["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4+k3s1"


def test_seed_workloads_spread_as_described(lab: LabState) -> None:
    apps = _settled(lab)
    assert sorted(apps["kube-system/coredns"]) == ["k3s-mgr", "k3s-w1", "k3s-w2"]
    assert sorted(apps["cnpg-system/cnpg-controller-manager"]) == ["k3s-w1", "k3s-w2"]
    assert sorted(apps["postgres/main-db-pooler"]) == ["k3s-w1", "k3s-w2"]
    assert sorted(apps["docfast/docfast"]) == ["k3s-w1", "k3s-w2"]
    assert len(apps["docfast-staging/docfast"]) == 1
    assert sorted(apps["kube-system/traefik"]) == ["k3s-w1", "k3s-w2"]  # DaemonSet: not on the tainted mgr
    wide = kubectl(lab, "get", "pods", "-A", "-o", "wide").stdout
    assert "NODE" in wide and "k3s-w1" in wide and "10.42." in wide
    prod = kubectl_json(lab, "get", "deploy", "docfast", "-n", "docfast")
    tols = {t["key"]: t.get("tolerationSeconds") for t in prod["spec"]["template"]["spec"]["tolerations"]}
    assert tols == {"node.kubernetes.io/not-ready": 10, "node.kubernetes.io/unreachable": 10}
    probe = prod["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert (probe["periodSeconds"], probe["failureThreshold"]) == (5, 2)


def test_watch_streams_a_change_made_by_another_client(lab: LabState) -> None:
    _settled(lab)
    watch = subprocess.Popen(
        [
            "kubectl",
            "--kubeconfig",
            lab.files["kubeconfig"],
            "get",
            "pods",
            "-A",
            "--watch",
            "--output-watch-events",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        first = watch.stdout.readline()  # the header: the initial list arrived
        assert "NAMESPACE" in first
        kubectl(lab, "label", "pod", "-n", "docfast-staging", "-l", "app=docfast", "lab-test=watched")
        deadline = time.monotonic() + 20
        seen = ""
        while time.monotonic() < deadline:
            line = watch.stdout.readline()
            seen += line
            if line.startswith("MODIFIED") and "docfast-staging" in line:
                break
        assert "MODIFIED" in seen and "docfast-staging" in seen
    finally:
        watch.kill()
        watch.wait()


def test_rollout_status_follows_a_rolling_update(lab: LabState) -> None:
    kubectl(
        lab,
        "-n",
        "docfast-staging",
        "set",
        "image",
        "deploy/docfast",
        "docfast=git.cloonar.com/openclawd/docfast:main-rollout",
    )
    out = kubectl(lab, "-n", "docfast-staging", "rollout", "status", "deploy/docfast", "--timeout=60s").stdout
    assert "successfully rolled out" in out
    rs = kubectl_json(lab, "-n", "docfast-staging", "get", "rs")["items"]
    current = [r for r in rs if r["spec"]["replicas"] > 0]
    assert len(current) == 1
    assert current[0]["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":main-rollout")
    history = kubectl(lab, "-n", "docfast-staging", "rollout", "history", "deploy/docfast").stdout
    assert "REVISION" in history


def test_deployer_context_is_namespace_scoped(lab: LabState) -> None:
    ok = kubectl(lab, "get", "pods", "-n", "docfast", context="deployer")
    assert "docfast-" in ok.stdout
    refused = kubectl(lab, "get", "pods", "-n", "kube-system", context="deployer", check=False)
    assert refused.returncode != 0
    assert (
        'pods is forbidden: User "system:serviceaccount:docfast:deployer" cannot list resource "pods" '
        'in API group "" in the namespace "kube-system"'
    ) in refused.stderr
    nodes = kubectl(lab, "get", "nodes", context="deployer", check=False)
    assert nodes.returncode != 0 and "at the cluster scope" in nodes.stderr
    can = {
        args: kubectl(lab, "auth", "can-i", *args, context="deployer", check=False).stdout.strip()
        for args in (
            ("patch", "deployments", "-n", "docfast"),
            ("patch", "deployments", "-n", "docfast-staging"),
            ("list", "pods", "-n", "kube-system"),
            ("delete", "nodes"),
            ("get", "secrets", "-n", "docfast"),
        )
    }
    assert can == {
        ("patch", "deployments", "-n", "docfast"): "yes",
        ("patch", "deployments", "-n", "docfast-staging"): "yes",
        ("list", "pods", "-n", "kube-system"): "no",
        ("delete", "nodes"): "no",
        ("get", "secrets", "-n", "docfast"): "no",
    }


def test_crds_and_custom_objects(lab: LabState) -> None:
    crds = {c["metadata"]["name"] for c in kubectl_json(lab, "get", "crd")["items"]}
    assert {
        "clusters.postgresql.cnpg.io",
        "poolers.postgresql.cnpg.io",
        "certificates.cert-manager.io",
        "clusterissuers.cert-manager.io",
    } <= crds
    issuer = kubectl_json(lab, "get", "clusterissuer", "letsencrypt-prod")
    assert issuer["spec"]["acme"]["privateKeySecretRef"]["name"] == "letsencrypt-prod"
    # A strategic-merge patch on a custom resource is refused (415), as by a real API server.
    bad = kubectl(
        lab,
        "patch",
        "clusterissuer",
        "letsencrypt-prod",
        "--type",
        "strategic",
        "-p",
        '{"metadata":{"labels":{"x":"y"}}}',
        check=False,
    )
    assert bad.returncode != 0
    assert "the body of the request was in an unknown format" in bad.stderr
    merged = kubectl(
        lab,
        "patch",
        "clusterissuer",
        "letsencrypt-prod",
        "--type",
        "merge",
        "-p",
        '{"metadata":{"labels":{"x":"y"}}}',
    )
    assert "patched" in merged.stdout
    # An invalid custom object is refused against the CRD schema.
    invalid = subprocess.run(
        ["kubectl", "--kubeconfig", lab.files["kubeconfig"], "apply", "--validate=false", "-f", "-"],
        input='{"apiVersion":"postgresql.cnpg.io/v1","kind":"Cluster","metadata":{"name":"bad","namespace":'
        '"postgres"},"spec":{"instances":"two"}}',
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert invalid.returncode != 0, invalid
    assert 'The Cluster "bad" is invalid' in invalid.stderr and "spec.instances" in invalid.stderr
    assert "metadata" not in invalid.stderr


def test_counts(lab: LabState) -> None:
    apps = Counter(p["metadata"]["namespace"] for p in kubectl_json(lab, "get", "pods", "-A")["items"])
    assert apps["docfast"] >= 2 and apps["kube-system"] >= 5
