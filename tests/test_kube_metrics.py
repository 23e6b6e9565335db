"""``kubectl top`` and ``metrics.k8s.io`` on the twin (#24, item 6): served as the aggregated API it is on
K3s — registered by the APIService ``v1beta1.metrics.k8s.io``, answering only while metrics-server runs —
with usage measured from the lab's own processes."""

from __future__ import annotations

import json

from console.units import quantity
from lab.state import LabState
from tests.conftest import kubectl, kubectl_json, wait_for


def _top(lab: LabState, *args: str) -> list[list[str]] | None:
    proc = kubectl(lab, "top", *args, check=False)
    if proc.returncode != 0:
        return None
    rows = [line.split() for line in proc.stdout.splitlines()[1:]]
    return rows or None


def test_kubectl_top_reads_the_labs_processes(fresh_lab: LabState) -> None:
    lab = fresh_lab
    nodes = wait_for(lambda: _top(lab, "nodes"), 30, "node metrics")
    assert {r[0] for r in nodes} == {"k3s-mgr", "k3s-w1", "k3s-w2"}
    assert all(r[1].endswith("m") and r[2].endswith("%") and r[3].endswith("Mi") for r in nodes)
    pods = wait_for(lambda: _top(lab, "pods", "-n", "postgres"), 30, "pod metrics")
    by_name = {r[0]: r for r in pods}
    primary = kubectl_json(lab, "get", "cluster.postgresql.cnpg.io", "main-db", "-n", "postgres")["status"][
        "currentPrimary"
    ]
    # A real PostgreSQL's resident memory, not a made-up figure: tens of MiB at least.
    assert int(by_name[primary][2].removesuffix("Mi")) >= 10
    path = f"/apis/metrics.k8s.io/v1beta1/namespaces/postgres/pods/{primary}"
    raw = json.loads(kubectl(lab, "get", "--raw", path).stdout)
    assert raw["kind"] == "PodMetrics" and raw["window"].endswith("s") and raw["timestamp"].endswith("Z")
    assert quantity(raw["containers"][0]["usage"]["memory"]) >= 10 * 1024 * 1024
    missing = kubectl(
        lab, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/postgres/pods/nope", check=False
    )
    assert missing.returncode == 1 and 'pods "nope" not found' in missing.stderr
    selected = kubectl(lab, "top", "pods", "-A", "-l", "app=docfast").stdout
    assert "docfast" in selected and "main-db" not in selected
    services = kubectl_json(lab, "get", "apiservice", "v1beta1.metrics.k8s.io")
    assert services["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system", "port": 443}


def test_metrics_answer_only_while_metrics_server_runs(fresh_lab: LabState) -> None:
    lab = fresh_lab
    kubectl(lab, "-n", "kube-system", "scale", "deployment", "metrics-server", "--replicas=0")

    def unavailable() -> bool:
        cond = kubectl_json(lab, "get", "apiservice", "v1beta1.metrics.k8s.io")["status"]["conditions"][0]
        return cond["status"] == "False" and cond["reason"] == "MissingEndpoints"

    wait_for(unavailable, 30, "the APIService unavailable")
    down = kubectl(lab, "top", "nodes", check=False)
    assert down.returncode == 1 and "the server is currently unable to handle the request" in down.stderr
    table = kubectl(lab, "get", "apiservice", "v1beta1.metrics.k8s.io").stdout
    assert "False (MissingEndpoints)" in table
    kubectl(lab, "-n", "kube-system", "scale", "deployment", "metrics-server", "--replicas=1")
    assert wait_for(lambda: _top(lab, "nodes"), 30, "node metrics again")


async def test_the_dashboard_shows_usage_beside_nodes_and_pods(fresh_lab: LabState) -> None:
    """The console reads metrics.k8s.io as any cluster's: usage and its share of the node's allocatable in
    the Nodes panel, usage against requests and limits in the Pods panel; with metrics-server gone the
    cells say ``-`` and the panels stay as trustworthy as their own sources."""
    from pathlib import Path

    from console.config import load_config
    from screens.app import Dashboard
    from tests.test_dashboard import _rows, _until

    lab = fresh_lab
    app = Dashboard(load_config(Path(lab.files["console_config"])))
    async with app.run_test(size=(200, 60)) as pilot:
        await _until(pilot, lambda: len(_rows(app, "nodes")) == 3, 30, "three nodes")
        await _until(
            pilot,
            lambda: all(r[2].endswith("%") and "Mi " in r[3] for r in _rows(app, "nodes").values()),
            60,
            "node usage with its share of allocatable",
        )
        coredns = next(r for r in _rows(app, "pods").values() if r[1].startswith("coredns-"))
        assert coredns[5].endswith("m/100m") and coredns[6].endswith("Mi/170Mi")  # its request and limit
        kubectl(lab, "-n", "kube-system", "scale", "deployment", "metrics-server", "--replicas=0")
        if app.live is not None:
            app.live.refresh("metrics")  # look now, not at the next 15 s tick
        await _until(
            pilot,
            lambda: all(r[2] == "-" for r in _rows(app, "nodes").values()),
            60,
            "usage gone with metrics-server",
        )
        assert app.query_one("#panel-nodes").state.value == "ok"  # the node list itself is still good
        kubectl(lab, "-n", "kube-system", "scale", "deployment", "metrics-server", "--replicas=1")
