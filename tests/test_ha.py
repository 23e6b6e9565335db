"""HA patch reapplication and HA as code, against a lab of its own.

The lab's "K3s restarted" fault resets CoreDNS and the CNPG operator to their stock manifests, as K3s
re-applying its packaged manifests does: the dashboard shows the drift, the dry run names exactly those
objects, apply fixes them, the exported manifests validate and reproduce the state on a reset cluster,
and a node-down drill measures what the DocFast tolerations are worth.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import tomli_w
import yaml

from actions.ha import Ha
from console.action import NoParams
from console.config import load_config
from console.events import Event, Finished
from console.runner import Runner, yes
from lab.kube.validation import validate as validate_crd
from lab.state import LabState
from screens.app import Dashboard
from tests.conftest import ROOT, kubectl, kubectl_json, opsconsole, own_lab, wait_for
from tests.test_dashboard import _rows, _until

RESET = {"coredns-spread", "cnpg-operator-spread"}


@pytest.fixture(scope="module")
def ha_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    # At x0.1 the stock 300 s toleration the payoff test waits out is 30 s (x0.2: 60 s).
    with own_lab(tmp_path_factory, "ha-lab", speed=0.1) as state:
        yield state


@pytest.fixture()
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def _ha(lab: LabState, *args: str, config: str | None = None) -> tuple[int, list[dict[str, Any]], str]:
    proc = opsconsole(
        "--config",
        config or lab.files["console_config"],
        "--action",
        *args,
        "--json",
        check=False,
        timeout=400,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events, proc.stdout + proc.stderr


def _drifted(events: list[dict[str, Any]]) -> set[str]:
    return {p["name"] for p in events[-1]["report"]["patches"] if p["drift"]}


async def test_restart_drift_dry_run_apply_clean(ha_lab: LabState, state_dir: Path) -> None:
    code, events, output = _ha(ha_lab, "ha", "--dry-run")
    assert code == 0 and not _drifted(events), output[-2000:]
    app = Dashboard(load_config(Path(ha_lab.files["console_config"])))
    async with app.run_test(size=(160, 60)) as pilot:
        await _until(pilot, lambda: len(_rows(app, "ha")) == 4, 60, "the HA panel")
        opsconsole("lab", "fault", "--dir", ha_lab.dir, "k3s", "restarted")
        # Within 2 s of the change (the watch delivers it; the panel re-renders on the event).
        await _until(
            pilot,
            lambda: {k for k, r in _rows(app, "ha").items() if r[2] != "holds"} == RESET,
            2.0,
            "the drift on the dashboard",
        )
    code, events, output = _ha(ha_lab, "ha", "--dry-run")
    assert code == 1 and _drifted(events) == RESET, output[-3000:]
    diffs = {p["name"]: p["diff"] for p in events[-1]["report"]["patches"]}
    assert "-replicas: 1" in diffs["coredns-spread"] and "+replicas: 3" in diffs["coredns-spread"]
    assert "whenUnsatisfiable: DoNotSchedule" in diffs["cnpg-operator-spread"]
    code, events, output = _ha(ha_lab, "ha", "--yes")
    assert code == 0, output[-3000:]
    assert set(events[-1]["report"]["applied"]) == RESET
    code, events, output = _ha(ha_lab, "ha", "--dry-run")
    assert code == 0 and not _drifted(events), output[-2000:]
    pods = kubectl_json(ha_lab, "get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"]
    assert len({p["spec"]["nodeName"] for p in pods if not p["metadata"].get("deletionTimestamp")}) == 3


def test_deployer_context_is_refused_and_changes_nothing(
    ha_lab: LabState, tmp_path: Path, state_dir: Path
) -> None:
    opsconsole("lab", "fault", "--dir", ha_lab.dir, "k3s", "restarted")
    raw = tomllib.loads(Path(ha_lab.files["console_config"]).read_text())
    raw["kubernetes"]["context"] = "deployer"
    config = tmp_path / "deployer.toml"
    config.write_text(tomli_w.dumps(raw))
    before = _written(ha_lab)
    code, _, output = _ha(ha_lab, "ha", "--yes", config=str(config))
    assert code == 3 and "Traceback" not in output, output[-2000:]
    assert len([ln for ln in output.strip().splitlines() if ln.startswith("opsconsole:")]) == 1
    assert _written(ha_lab) == before


def _written(lab: LabState) -> tuple[Any, ...]:
    """What a write to CoreDNS's Deployment would change: its generation, spec, labels and annotations.
    (Not its resourceVersion: after the K3s restart the controllers keep updating its status.)"""
    d = kubectl_json(lab, "get", "deploy", "coredns", "-n", "kube-system")
    meta = d["metadata"]
    return meta.get("generation"), d["spec"], meta.get("labels"), meta.get("annotations")


def test_export_validates_and_reproduces_the_state(ha_lab: LabState, tmp_path: Path, state_dir: Path) -> None:
    out = tmp_path / "ha"
    code, _, output = _ha(ha_lab, "ha-export", "--dir", str(out))
    assert code == 0, output[-2000:]
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    crd = yaml.safe_load(
        (ROOT.parent / "shared/specs/cnpg-1.25.1/postgresql.cnpg.io_poolers.yaml").read_text()
    )
    for name in kustomization["resources"]:
        obj = yaml.safe_load((out / name).read_text())
        if obj["kind"] == "Pooler":
            assert validate_crd(obj, crd, strict=True) == [], name
        else:
            kubernetes_validate.validate(obj, "1.34", strict=True)
    assert "coredns.yaml.skip" in (out / "DURABILITY.md").read_text()
    # The lab's patches are reset (as after a K3s restart, test above); kubectl apply -k brings them back.
    opsconsole("lab", "fault", "--dir", ha_lab.dir, "k3s", "restarted")
    assert _drifted(_ha(ha_lab, "ha", "--dry-run")[1]) == RESET
    kubectl(ha_lab, "apply", "-k", str(out))
    code, events, output = _ha(ha_lab, "ha", "--dry-run")
    assert code == 0 and not _drifted(events), output[-2000:]


def _drill_recovery(lab: LabState, config: Path) -> float:
    proc = opsconsole(
        "--config", str(config), "--action", "drill", "--scenario", "node-down", "--target", "k3s-w1",
        "--yes", "--json", check=False, timeout=600,
    )  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    return float(events[-1]["report"]["time_to_recovery_s"])


def test_tolerations_payoff_in_a_node_down_drill(ha_lab: LabState, tmp_path: Path, state_dir: Path) -> None:
    raw = tomllib.loads(Path(ha_lab.files["console_config"]).read_text())
    raw["database"]["poll_interval_s"] = 1
    raw["drill"]["hetzner_poll_s"] = 2
    config = tmp_path / "console.toml"
    config.write_text(tomli_w.dumps(raw))
    # DocFast prod without its 10 s tolerations: the stock 300 s apply.
    kubectl(ha_lab, "patch", "deploy", "docfast", "-n", "docfast", "--type=json", "-p",
            json.dumps([{"op": "remove", "path": "/spec/template/spec/tolerations"}]))  # fmt: skip
    wait_for(
        lambda: (
            kubectl_json(ha_lab, "get", "deploy", "docfast", "-n", "docfast")["status"].get("updatedReplicas")
            == 2
            and kubectl_json(ha_lab, "get", "deploy", "docfast", "-n", "docfast")["status"].get(
                "readyReplicas"
            )
            == 2
        ),
        120,
        "DocFast rolled out without tolerations",
    )
    without = _drill_recovery(ha_lab, config)
    code, events, output = _ha(ha_lab, "ha", "--yes", config=str(config))
    assert code == 0 and "docfast-prod-failover" in events[-1]["report"]["applied"], output[-2000:]
    with_patch = _drill_recovery(ha_lab, config)
    print(
        f"node-down k3s-w1 recovery: without tolerations {without:.1f} s, "
        f"with 10 s tolerations {with_patch:.1f} s"
    )
    assert without > 2 * with_patch and without - with_patch > 20


OPT_IN = {
    "docfast-prod-resources",
    "docfast-prod-pdb",
    "pooler-pdb",
    "coredns-pdb",
    "database-via-pooler-db",
    "database-via-pooler-pooler",
}
MANAGED = "app.kubernetes.io/managed-by=opsconsole"


def _opt_in(lab: LabState, tmp_path: Path, name: str, bad_budget: bool = False) -> Path:
    """The lab's config with every opt-in item switched on (DocFast's CPU request raised to 250m, so the
    resources item has something to change)."""
    raw = tomllib.loads(Path(lab.files["console_config"]).read_text())
    for p in raw["ha"]["patches"]:
        p["enabled"] = True
        if p["name"] == "docfast-prod-resources":
            p["resources"]["requests"]["cpu"] = "0.25"
    for b in raw["ha"]["budgets"]:
        b["enabled"] = True
    if bad_budget:
        raw["ha"]["budgets"][0]["match_labels"] = {"app": "no-such-app"}
    raw["ha"]["network_policy"]["enabled"] = True
    path = tmp_path / name
    path.write_text(tomli_w.dumps(raw))
    return path


def _managed(lab: LabState) -> list[str]:
    objs = kubectl_json(lab, "get", "pdb,netpol", "-A", "-l", MANAGED)["items"]
    return sorted(f"{o['kind']}/{o['metadata']['namespace']}/{o['metadata']['name']}" for o in objs)


def _cpu_request(lab: LabState) -> str:
    d = kubectl_json(lab, "get", "deploy", "docfast", "-n", "docfast")
    return str(d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])


async def test_opt_in_policies_apply_verify_and_roll_back(
    ha_lab: LabState, tmp_path: Path, state_dir: Path
) -> None:
    # Off by default, and said to be off.
    code, events, output = _ha(ha_lab, "ha", "--dry-run")
    off = {n for n in OPT_IN if not n.startswith("database-via-pooler-")} | {"database-via-pooler"}
    assert code == 0 and set(events[-1]["report"]["opt_in_off"]) == off, output[-2000:]
    good = _opt_in(ha_lab, tmp_path, "opt-in.toml")
    code, events, output = _ha(ha_lab, "ha", "--dry-run", config=str(good))
    assert code == 1 and _drifted(events) == OPT_IN, output[-3000:]
    assert _managed(ha_lab) == [] and _cpu_request(ha_lab) == "100m"

    # A budget that selects no pod fails verification: everything the run created or changed is undone
    # (exit 4, rolled back).
    seen: list[Event] = []
    action = Ha(load_config(_opt_in(ha_lab, tmp_path, "bad.toml", True)), NoParams())
    action.verify_timeout_s = 3.0
    done = await Runner(action, seen.append).run(yes(True))
    assert done.exit_code == 4 and done.verdict == "ROLLED-BACK", done
    assert isinstance(seen[-1], Finished) and "selects no pods" in seen[-1].summary
    assert _managed(ha_lab) == [] and _cpu_request(ha_lab) == "100m"

    code, events, output = _ha(ha_lab, "ha", "--yes", config=str(good))
    assert code == 0 and set(events[-1]["report"]["applied"]) == OPT_IN, output[-3000:]
    assert len(_managed(ha_lab)) == 5 and _cpu_request(ha_lab) == "0.25"
    budget = kubectl_json(ha_lab, "get", "pdb", "docfast", "-n", "docfast")
    assert budget["status"]["currentHealthy"] == 2 and budget["status"]["disruptionsAllowed"] == 1
    code, events, output = _ha(ha_lab, "ha", "--dry-run", config=str(good))
    assert code == 0 and not _drifted(events), output[-2000:]

    # The durable form validates against the Kubernetes schemas.
    out = tmp_path / "export"
    code, _, output = _ha(ha_lab, "ha-export", "--dir", str(out), config=str(good))
    assert code == 0, output[-2000:]
    kinds = set()
    for name in yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]:
        obj = yaml.safe_load((out / name).read_text())
        kinds.add(obj["kind"])
        if obj["kind"] != "Pooler":
            kubernetes_validate.validate(obj, "1.34", strict=True)
    assert {"PodDisruptionBudget", "NetworkPolicy"} <= kinds
    # Live on the dashboard: every item holds; a budget deleted behind the console's back shows at once.
    app = Dashboard(load_config(good))
    async with app.run_test(size=(160, 60)) as pilot:
        await _until(
            pilot,
            lambda: len(_rows(app, "ha")) == 10 and all(r[2] == "holds" for r in _rows(app, "ha").values()),
            60,
            "ten HA items holding",
        )
        kubectl(ha_lab, "delete", "pdb", "coredns", "-n", "kube-system")
        await _until(pilot, lambda: _rows(app, "ha")["coredns-pdb"][2] != "holds", 2.0, "the deleted budget")
    kubectl(ha_lab, "delete", "pdb,netpol", "-A", "-l", MANAGED)
