"""What ``opsconsole watch`` writes for other machines: the in-cluster manifests (valid, least RBAC, no
secret value), the PrometheusRule (every metric it names is exported), the systemd unit, the Dockerfile's
user.  The manifests' apply to the lab and the ServiceAccount's rights are tested in tests/test_watch.py."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from types import SimpleNamespace

import kubernetes_validate
import pytest
import yaml
from prometheus_client import generate_latest

from console.config import Config, load_config
from console.model import Snapshot
from console.slo_ledger import MonthSpend
from opsconsole.watch_cli import systemd_unit
from watch.export import export
from watch.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]


def _docs(directory: Path) -> list[dict]:  # type: ignore[type-arg]
    return [d for f in sorted(directory.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]


def test_the_manifests_validate_and_grant_only_reads(tmp_path: Path) -> None:
    config = load_config(ROOT / "config.toml")
    written = export(config, tmp_path, "registry.example/opsconsole:0.1.0")
    assert {p.name for p in written} >= {"20-rbac.yaml", "40-deployment.yaml", "SECRETS.txt"}
    docs = _docs(tmp_path)
    for doc in docs:
        kubernetes_validate.validate(doc, "1.34", strict=True)
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Deployment") == 1 and "Service" in kinds and "Namespace" in kinds
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert all(r["verbs"] in (["get", "list", "watch"], ["get", "list"]) for r in cluster_role["rules"])
    roles = [d for d in docs if d["kind"] == "Role"]
    named = [r for role in roles for r in role["rules"] if set(r["verbs"]) & {"get", "update"}]
    assert all(r.get("resourceNames") for r in named)  # updates and secret reads by name only
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    inside = Config.model_validate(tomllib.loads(cm["data"]["config.toml"]))
    assert inside.kubernetes.kubeconfig == "in-cluster" and inside.watch.listen == "0.0.0.0:9469"
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    env = deploy["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {e["name"] for e in env if "valueFrom" in e}
    assert {"HCLOUD_TOKEN", "BORG_PASSPHRASE"} <= refs
    assert all("value" not in e for e in env if e["name"] in refs)  # references, never values
    assert "HCLOUD_TOKEN" in (tmp_path / "SECRETS.txt").read_text()


def test_the_prometheus_rules_name_only_exported_metrics() -> None:
    watcher = SimpleNamespace(
        snapshot=Snapshot("docfast", "admin", False, 0.0),
        engine=SimpleNamespace(firing=list),
        leader=True,
        evaluated_at=0.0,
        pending_messages=0,
        slo=SimpleNamespace(spend=MonthSpend("2026-12", {"probe:prod": 3.0}, 1296.0)),
        store=SimpleNamespace(items=lambda kind: []),
    )
    text = generate_latest(Metrics(watcher).registry).decode()  # type: ignore[arg-type]
    exported = set(re.findall(r"^# TYPE (\S+)", text, re.M))
    exported |= {n + "_total" for n in exported} | {
        n + s for n in exported for s in ("_bucket", "_sum", "_count")
    }
    rules = yaml.safe_load((ROOT / "deploy" / "prometheusrule.yaml").read_text())
    named = {
        m
        for g in rules["spec"]["groups"]
        for r in g["rules"]
        for m in re.findall(r"opsconsole_\w+", r["expr"])
    }
    assert named and named <= exported, named - exported


def test_the_systemd_unit_runs_the_watcher_with_its_config(tmp_path: Path) -> None:
    unit = systemd_unit(tmp_path / "config.toml", "127.0.0.1:9470")
    assert f"watch --config {tmp_path / 'config.toml'} --listen 127.0.0.1:9470" in unit
    assert "Restart=on-failure" in unit and "[Install]" in unit


def test_the_image_runs_as_the_user_the_manifests_name(tmp_path: Path) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    export(load_config(ROOT / "config.toml"), tmp_path, "opsconsole:test")
    (deploy,) = [d for d in _docs(tmp_path) if d["kind"] == "Deployment"]
    uid = deploy["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert f"USER {uid}" in dockerfile and 'ENTRYPOINT ["opsconsole"]' in dockerfile


def test_a_target_that_cannot_be_used_stops_the_watcher_with_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tomli_w

    from opsconsole.watch_cli import main

    monkeypatch.delenv("OPSCONSOLE_TEST_UNSET", raising=False)
    raw = tomllib.loads((ROOT / "config.toml").read_text())
    raw.setdefault("watch", {})["notify"] = [
        {"name": "ops", "url": "json://hook/{env:OPSCONSOLE_TEST_UNSET}"}
    ]
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(raw))
    assert main(["--config", str(path), "--listen", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "opsconsole watch: watch.notify ops: $OPSCONSOLE_TEST_UNSET is not set", err
    raw["watch"]["notify"] = [{"name": "ops", "url": "nosuchscheme://hook"}]
    path.write_text(tomli_w.dumps(raw))
    assert main(["--config", str(path), "--listen", "127.0.0.1:0"]) == 2
    assert "apprise does not accept this URL" in capsys.readouterr().err
