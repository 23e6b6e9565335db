"""`--action status`: the dashboard's snapshot for scripts — JSON, findings, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lab.state import LabState
from tests.conftest import ROOT, env_file, hcloud, opsconsole, wait_for


def _status(lab: LabState, *extra: str, config: str | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    proc = opsconsole(
        "--config",
        config or lab.files["console_config"],
        "--action",
        "status",
        "--json",
        *extra,
        check=False,
        timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_status_json_is_the_snapshot(lab: LabState) -> None:
    last: list[dict] = []  # type: ignore[type-arg]

    def settled() -> dict | None:  # type: ignore[type-arg]
        code, doc = _status(lab)
        last[:] = [doc]
        db = doc["database"] or {}
        return (
            doc
            if code == 0 and db.get("ready_instances") == 2 and all(p["ok"] for p in doc["probes"])
            else None
        )

    try:
        doc = wait_for(settled, 90, "a healthy status", interval=1)
    except AssertionError:
        crit = [f for f in (last[0]["findings"] if last else []) if f["severity"] == "critical"]
        raise AssertionError(f"no healthy status within 90 s; critical findings: {crit}") from None
    assert doc["healthy"] is True and doc["lab"] is True and doc["context"] == "admin"
    assert {n["name"] for n in doc["nodes"]} == {"k3s-mgr", "k3s-w1", "k3s-w2"}
    assert all(n["ready"] and n["hetzner_status"] == "running" for n in doc["nodes"])
    assert doc["database"]["primary"] in ("main-db-1", "main-db-2")
    assert {t["name"] for t in doc["load_balancer"]["targets"]} == {"k3s-w1", "k3s-w2"}
    assert doc["load_balancer"]["budget_limit"] == 3600
    assert {p["name"] for p in doc["probes"]} == {"prod", "staging"}
    codes = {f["code"] for f in doc["findings"]}
    assert {"weak-db-credentials", "no-pdbs", "no-networkpolicies", "api-port-exposed"} <= codes
    prod = next(w for w in doc["workloads"] if w["namespace"] == "docfast" and w["name"] == "docfast")
    assert (prod["desired"], prod["ready"]) == (2, 2)
    assert {c["name"] for c in doc["certificates"]} == {"docfast.dev-tls", "staging.docfast.dev-tls"}


def test_status_exits_1_on_a_critical_finding(lab: LabState) -> None:
    env = {**env_file(lab.files["hcloud_env"]), "HCLOUD_CONFIG": "/nonexistent/hcloud.toml"}
    hcloud(env, "server", "poweroff", "k3s-mgr")
    try:

        def critical() -> dict | None:  # type: ignore[type-arg]
            code, doc = _status(lab)
            return doc if code == 1 else None

        doc = wait_for(critical, 60, "status to report the powered-off node", interval=1)
        crit = [f for f in doc["findings"] if f["severity"] == "critical"]
        assert any(f["code"] == "server-not-running" and f["subject"] == "k3s-mgr" for f in crit)
        text = opsconsole("--config", lab.files["console_config"], "--action", "status", check=False)
        assert text.returncode == 1 and "verdict:   CRITICAL" in text.stdout
    finally:
        hcloud(env, "server", "poweron", "k3s-mgr")


def test_deployer_context_sees_forbidden_and_still_runs(lab: LabState, tmp_path: Path) -> None:
    config = (
        Path(lab.files["console_config"]).read_text().replace('context = "admin"', 'context = "deployer"')
    )
    path = tmp_path / "deployer.toml"
    path.write_text(config)
    _, doc = _status(lab, config=str(path))
    sources = {s["name"]: s for s in doc["sources"]}
    assert sources["kube:nodes"]["state"] == "forbidden"
    assert sources["kube:pods"]["state"] == "forbidden"  # namespace-scoped: no cluster-wide list
    assert doc["nodes"] == [] and doc["context"] == "deployer"


def test_status_never_imports_textual_or_the_lab(lab: LabState) -> None:
    code = (
        "import sys, opsconsole.cli as c\n"
        f"rc = c.main(['--config', {lab.files['console_config']!r}, '--action', 'status', '--json'])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'lab')]\n"
        "print('LOADED:' + ','.join(bad), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.stderr.strip().splitlines()[-1] == "LOADED:", proc.stderr


def test_unreachable_cluster_is_one_sentence(tmp_path: Path, lab: LabState) -> None:
    config = Path(lab.files["console_config"]).read_text()
    kubeconfig = Path(lab.files["kubeconfig"]).read_text()
    dead = tmp_path / "kubeconfig"
    dead.write_text(kubeconfig.replace(lab.kubernetes_url or "", "https://127.0.0.1:9"))
    path = tmp_path / "dead.toml"
    path.write_text(config.replace(lab.files["kubeconfig"], str(dead)))
    proc = opsconsole("--config", str(path), "--action", "status", check=False, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "kubernetes" in proc.stdout and "verdict:   CRITICAL" in proc.stdout
