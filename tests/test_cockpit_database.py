"""The cockpit's actions that move the database and empty nodes (#20), on a lab of their own: a switchover
from the Database panel (pooler paused meanwhile, the write outage measured), fence and unfence, and a
drain that a PodDisruptionBudget blocks — stopped, naming the budget, the node uncordoned again."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from console.config import load_config
from console.lock import ClusterLock
from lab.state import LabState
from tests.conftest import kubectl, kubectl_json, run_action, wait_for
from tests.test_dashboard import _until


@pytest.fixture(scope="module")
def lab(fresh_lab: LabState) -> LabState:
    return fresh_lab


def _cluster(lab: LabState) -> dict[str, Any]:
    return kubectl_json(lab, "get", "clusters.postgresql.cnpg.io", "-n", "postgres", "main-db")


def _healthy(lab: LabState, primary: str) -> bool:
    st = _cluster(lab).get("status") or {}
    return st.get("currentPrimary") == primary and "healthy" in str(st.get("phase", "")).lower()


def _act(lab: LabState, tmp: Path, action: str, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    return run_action(lab, action, *args, state=tmp / "state", timeout=300)


async def test_switchover_from_the_database_panel_changes_the_primary(
    lab: LabState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from screens.app import Dashboard
    from screens.panels import Panel
    from screens.runner import RunnerScreen

    wait_for(lambda: _healthy(lab, "main-db-1"), 60, "a healthy cluster, main-db-1 primary")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    app = Dashboard(load_config(Path(lab.files["console_config"])))
    async with app.run_test(size=(160, 50)) as pilot:
        db = app.query_one("#panel-database", Panel)
        await _until(pilot, lambda: any(k.value == "main-db-2" for k in db.table.rows), 60, "the replica row")
        db.table.focus()
        db.table.move_cursor(row=next(i for i, k in enumerate(db.table.rows) if k.value == "main-db-2"))
        await pilot.press("S")
        await _until(pilot, lambda: isinstance(app.screen, RunnerScreen), 10, "the runner screen")
        screen = app.screen
        assert isinstance(screen, RunnerScreen)
        await _until(pilot, lambda: screen.word == "main-db-2", 30, "the row as the target")
        await pilot.press(*"main-db-2", "enter")
        await _until(pilot, lambda: screen.result is not None, 120, "the switchover")
        assert screen.result is not None and screen.result.verdict == "DONE", screen.result
    report = screen.result.report
    assert report["primary"] == "main-db-2" and report["paused"] is True and report["writes"] > 0, report
    assert _healthy(lab, "main-db-2")
    pooler = kubectl_json(lab, "get", "poolers.postgresql.cnpg.io", "-n", "postgres", "main-db-pooler")
    assert not (pooler["spec"].get("pgbouncer") or {}).get("paused")  # resumed after the promotion


def test_fence_and_unfence_a_replica_headless(lab: LabState, tmp_path: Path) -> None:
    wait_for(lambda: _healthy(lab, "main-db-2"), 60, "main-db-2 primary")
    code, _, output = _act(lab, tmp_path, "fence", "--target", "main-db-1")
    assert code == 2 and "--yes" in output, output[-1500:]  # a change without --yes: nothing happens
    code, _, output = _act(lab, tmp_path, "fence", "--target", "main-db-1", "--yes")
    assert code == 0, output[-2000:]
    fenced = (_cluster(lab)["metadata"].get("annotations") or {}).get("cnpg.io/fencedInstances")
    assert json.loads(fenced) == ["main-db-1"]
    code, _, output = _act(lab, tmp_path, "unfence", "--target", "main-db-1", "--yes")
    assert code == 0, output[-2000:]
    assert "cnpg.io/fencedInstances" not in (_cluster(lab)["metadata"].get("annotations") or {})
    code, _, output = _act(lab, tmp_path, "fence", "--target", "main-db-9", "--yes")
    assert code == 2 and "Traceback" not in output


async def test_a_drain_blocked_by_a_budget_names_it_and_is_refused_while_the_lock_is_held(
    lab: LabState, tmp_path: Path
) -> None:
    from console.sources.kube import api_client

    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "docfast-pdb", "namespace": "docfast"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "docfast"}}},
    }
    created = subprocess.run(
        ["kubectl", "--kubeconfig", lab.files["kubeconfig"], "create", "-f", "-"],
        input=json.dumps(pdb), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    node = next(
        p["spec"]["nodeName"]
        for p in kubectl_json(lab, "get", "pods", "-n", "docfast", "-l", "app=docfast")["items"]
    )
    wait_for(
        lambda: kubectl_json(lab, "get", "pdb", "-n", "docfast", "docfast-pdb").get("status"), 30, "the PDB"
    )
    # From the Nodes panel: e on the node's row; the preflight refuses, naming the budget.
    from screens.app import Dashboard
    from screens.panels import Panel
    from screens.runner import RunnerScreen

    app = Dashboard(load_config(Path(lab.files["console_config"])))
    async with app.run_test(size=(160, 50)) as pilot:
        nodes = app.query_one("#panel-nodes", Panel)
        await _until(pilot, lambda: nodes.table.row_count == 3, 30, "three nodes")
        nodes.table.focus()
        nodes.table.move_cursor(row=next(i for i, k in enumerate(nodes.table.rows) if k.value == node))
        await pilot.press("e")
        await _until(pilot, lambda: isinstance(app.screen, RunnerScreen), 10, "the runner screen")
        screen = app.screen
        assert isinstance(screen, RunnerScreen)
        await _until(pilot, lambda: screen.result is not None, 60, "the drain's preflight")
        assert screen.result is not None and screen.result.verdict == "REFUSED", screen.result
        assert "held by the PodDisruptionBudget docfast-pdb" in screen.result.summary
    assert not kubectl_json(lab, "get", "node", node)["spec"].get("unschedulable")  # nothing was done
    code, events, output = _act(lab, tmp_path, "drain", "--target", node, "--yes")
    assert code == 3 and "held by the PodDisruptionBudget docfast-pdb" in output, output[-2000:]
    code, events, output = _act(
        lab, tmp_path, "drain", "--target", node, "--yes", "--force", "--timeout", "3"
    )
    said = events[-1]["summary"] if events else output
    assert code == 4 and "no progress for 3 s" in said and "docfast-pdb" in said, output[-2500:]
    assert "uncordoned again" in said
    assert not kubectl_json(lab, "get", "node", node)["spec"].get("unschedulable")

    config = load_config(Path(lab.files["console_config"]))
    api = await api_client(config.kubernetes.kubeconfig, config.kubernetes.context)
    lock = ClusterLock(
        api, config.drill.lock_namespace, config.drill.lock_name, "another@console pid 1", "x", 60
    )
    await lock.acquire()
    try:
        code, _, output = await asyncio.to_thread(_act, lab, tmp_path, "drain", "--target", node, "--yes")
        assert code == 3 and "holds the cluster lock" in output, output[-2000:]
    finally:
        await lock.release()
        await api.close()
    kubectl(lab, "delete", "pdb", "-n", "docfast", "docfast-pdb")


async def test_the_primary_budget_holds_until_the_drain_switches_over_first(
    lab: LabState, tmp_path: Path
) -> None:
    """CNPG's ``main-db-primary`` PodDisruptionBudget refuses the primary's eviction (429, naming it); the
    drain action therefore switches over before it evicts, and the old primary's pod then goes."""
    from console.clients.kube import KubeError, request
    from console.sources.kube import api_client

    wait_for(
        lambda: (_cluster(lab).get("status") or {}).get("readyInstances") == 2, 90, "two ready instances"
    )
    primary = _cluster(lab)["status"]["currentPrimary"]
    node = kubectl_json(lab, "get", "pod", "-n", "postgres", primary)["spec"]["nodeName"]
    budget = kubectl_json(lab, "get", "pdb", "-n", "postgres", "main-db-primary")
    assert budget["spec"]["minAvailable"] == 1 and budget["status"]["disruptionsAllowed"] == 0
    api = await api_client(lab.files["kubeconfig"], "admin")
    try:
        with pytest.raises(KubeError) as refused:
            meta = {"name": primary, "namespace": "postgres"}
            body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": meta}
            await request(api, "POST", f"/api/v1/namespaces/postgres/pods/{primary}/eviction", body)
    finally:
        await api.close()
    assert refused.value.status == 429 and "main-db-primary" in " ".join(refused.value.causes)

    code, events, output = await asyncio.to_thread(_act, lab, tmp_path, "drain", "--target", node, "--yes")
    assert code == 0, output[-3000:]
    steps = [e.get("step") for e in events if e["kind"] == "Progress"]
    assert "switchover" in steps and "evict" in steps and steps.index("switchover") < steps.index("evict")
    now = _cluster(lab)["status"]["currentPrimary"]
    assert now != primary
    code, _, output = await asyncio.to_thread(_act, lab, tmp_path, "uncordon", "--target", node, "--yes")
    assert code == 0, output[-2000:]
    wait_for(
        lambda: _healthy(lab, now) and _cluster(lab)["status"].get("readyInstances") == 2, 120, "rejoined"
    )


def test_power_cycle_resets_a_node_and_waits_for_its_new_boot(lab: LabState, tmp_path: Path) -> None:
    primary = _cluster(lab)["status"]["currentPrimary"]
    on = {
        p["metadata"]["name"]: p["spec"]["nodeName"]
        for p in kubectl_json(lab, "get", "pods", "-n", "postgres", "-l", "cnpg.io/podRole=instance")["items"]
    }
    code, _, output = _act(lab, tmp_path, "power-cycle", "--target", on[primary], "--yes")
    assert code == 3 and "a reset makes CNPG fail over" in output, output[-1500:]  # --force, or drain first
    replica_node = next(n for name, n in on.items() if name != primary)
    boot = kubectl_json(lab, "get", "node", replica_node)["status"]["nodeInfo"]["bootID"]
    code, events, output = _act(lab, tmp_path, "power-cycle", "--target", replica_node, "--yes")
    assert code == 0, output[-2000:]
    now = kubectl_json(lab, "get", "node", replica_node)
    assert now["status"]["nodeInfo"]["bootID"] not in ("", boot) and events[-1]["report"]["boot_id"]
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in now["status"]["conditions"])


async def test_renew_from_the_certificates_panel_issues_a_new_revision(
    lab: LabState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from screens.app import Dashboard
    from screens.panels import Panel
    from screens.runner import RunnerScreen

    def cert() -> dict[str, Any]:
        return kubectl_json(lab, "get", "certificates.cert-manager.io", "-n", "docfast", "docfast.dev-tls")

    before = cert()["status"]
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    app = Dashboard(load_config(Path(lab.files["console_config"])))
    async with app.run_test(size=(160, 50)) as pilot:
        certs = app.query_one("#panel-certs", Panel)
        key = "docfast/docfast.dev-tls"
        await _until(pilot, lambda: any(k.value == key for k in certs.table.rows), 60, "the certificate row")
        certs.table.focus()
        certs.table.move_cursor(row=next(i for i, k in enumerate(certs.table.rows) if k.value == key))
        await pilot.press("n")
        await _until(pilot, lambda: isinstance(app.screen, RunnerScreen), 10, "the runner screen")
        screen = app.screen
        assert isinstance(screen, RunnerScreen)
        await _until(pilot, lambda: screen.word == key, 30, "the row as the target")
        await pilot.press(*key, "enter")
        await _until(pilot, lambda: screen.result is not None, 120, "the renewal")
        assert screen.result is not None and screen.result.verdict == "DONE", screen.result
        row = lambda: certs.table.get_row(key)  # noqa: E731
        await pilot.press("escape")
        await _until(pilot, lambda: str(row()[2]) in ("90", "89.9", "90.0"), 30, f"90 days left: {row()}")
    after = cert()["status"]
    assert after["revision"] == before["revision"] + 1 and after["notAfter"] > before["notAfter"]
    code, _, output = _act(lab, tmp_path, "renew", "--target", "docfast/nope", "--yes")
    assert code == 3 and "there is no Certificate docfast/nope" in output, output[-1500:]
