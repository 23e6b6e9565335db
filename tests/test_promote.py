"""Release promotion against a lab of its own: staging's image promoted with no failed health check,
a release that fails readiness only in production rolled back by itself, and refusal under a drill's lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from lab.state import LabState
from tests.conftest import ROOT, kubectl, kubectl_json, opsconsole, own_lab, wait_for

IMAGE = "git.cloonar.com/openclawd/docfast"


@pytest.fixture(scope="module")
def rel_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    with own_lab(tmp_path_factory, "release-lab") as state:
        yield state


@pytest.fixture(scope="module")
def rel_config(rel_lab: LabState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw: dict[str, Any] = tomllib.loads(Path(rel_lab.files["console_config"]).read_text())
    raw["release"].update({"soak_s": 1, "post_check_s": 3, "rollout_timeout_s": 20})
    path = tmp_path_factory.mktemp("release-config") / "console.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def _run(config: Path, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    proc = opsconsole("--config", str(config), "--action", *args, "--json", check=False, timeout=300)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events, proc.stdout + proc.stderr


def _stage(lab: LabState, tag: str) -> None:
    kubectl(lab, "set", "image", "deployment/docfast", f"docfast={IMAGE}:{tag}", "-n", "docfast-staging")
    wait_for(
        lambda: (
            (d := kubectl_json(lab, "get", "deploy", "docfast", "-n", "docfast-staging"))["status"].get(
                "updatedReplicas"
            )
            == 1
            and d["status"].get("readyReplicas") == 1
            and d["status"].get("replicas") == 1
        ),
        60,
        f"staging on {tag}",
    )


def _prod_images(lab: LabState) -> dict[str, str]:
    pods = kubectl_json(lab, "get", "pods", "-n", "docfast", "-l", "app=docfast")["items"]
    return {
        p["spec"]["nodeName"]: p["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
    }


def test_promote_runs_staging_in_production_without_a_failed_check(
    rel_lab: LabState, rel_config: Path
) -> None:
    _stage(rel_lab, "v0.6.0")
    code, events, output = _run(rel_config, "promote", "--dry-run")
    assert code == 0 and any("v0.6.0" in e.get("message", "") for e in events), output[-2000:]
    code, events, output = _run(rel_config, "promote", "--yes")
    assert code == 0, output[-3000:]
    report = events[-1]["report"]
    assert report["probes"]["http-prod"]["failed"] == 0 and report["probes"]["http-prod"]["ok"] >= 4
    wait_for(
        lambda: _prod_images(rel_lab) == {"k3s-w1": "v0.6.0", "k3s-w2": "v0.6.0"},
        60,
        "v0.6.0 on both workers",
    )
    versions = {control_get_version(rel_lab) for _ in range(6)}
    assert versions == {"v0.6.0"}


def control_get_version(lab: LabState) -> str:
    import urllib.request

    address = lab.load_balancer["address"]
    req = urllib.request.Request(f"http://{address}/version", headers={"Host": "docfast.dev"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return str(json.loads(resp.read())["version"])


def test_release_failing_in_production_rolls_back_by_itself(rel_lab: LabState, rel_config: Path) -> None:
    before = _prod_images(rel_lab)
    _stage(rel_lab, "v0.6.1-broken-in-docfast")  # healthy in staging, fails readiness in production
    code, events, output = _run(rel_config, "promote", "--yes")
    assert code == 1, output[-3000:]
    assert events[-1]["verdict"] == "ROLLED-BACK" and "back on" in events[-1]["summary"]
    assert events[-1]["report"]["probes"]["http-prod"]["failed"] == 0  # production kept serving
    wait_for(lambda: _prod_images(rel_lab) == before, 60, "production back on its previous image")


def test_promotion_is_refused_while_a_drill_holds_the_lock(rel_lab: LabState, rel_config: Path) -> None:
    _stage(rel_lab, "v0.6.2")
    drill = subprocess.Popen(
        [sys.executable, "-m", "console", "--config", str(rel_config), "--action", "drill", "--scenario",
         "node-down", "--target", "k3s-w2", "--yes", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ),
    )  # fmt: skip
    try:
        assert drill.stdout is not None
        for line in drill.stdout:
            if '"StepStarted"' in line and '"fault"' in line:
                break
        code, _, output = _run(rel_config, "promote", "--yes")
        assert code == 3 and "holds the cluster lock" in output and "drill" in output, output[-2000:]
        drill.communicate(timeout=300)
        assert drill.returncode == 0
    finally:
        if drill.poll() is None:
            drill.kill()
