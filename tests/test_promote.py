"""Release promotion against a lab of its own: staging's exact digest promoted with no failed health check,
a release that fails readiness only in production rolled back by itself, refusal under a drill's lock, and
the seed's pipeline route — a commit pushed to the lab forge over SSH reaches staging through deploy.yml,
and promote tags it, pushes the tag and follows promote.yml into production.
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
from tests.conftest import ROOT, edited_config, kubectl, kubectl_json, opsconsole, own_lab, wait_for

IMAGE = "git.cloonar.com/openclawd/docfast"


@pytest.fixture(scope="module")
def rel_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    with own_lab(tmp_path_factory, "release-lab") as state:
        yield state


@pytest.fixture(scope="module")
def rel_config(rel_lab: LabState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    def quick(raw: dict[str, Any]) -> None:  # a short soak and post-check: the gates, not the clock
        raw["release"].update({"soak_s": 1, "post_check_s": 3, "rollout_timeout_s": 20})

    return edited_config(rel_lab, tmp_path_factory, "release-config", quick)


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


def _pods(lab: LabState, namespace: str) -> list[dict[str, Any]]:
    items = kubectl_json(lab, "get", "pods", "-n", namespace, "-l", "app=docfast")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _prod_images(lab: LabState) -> dict[str, str]:
    """Node -> the tag production's pod runs there (a pinned ``repo:tag@sha256:…`` reads as its tag)."""
    return {
        p["spec"]["nodeName"]: p["spec"]["containers"][0]["image"].partition("@")[0].rsplit(":", 1)[1]
        for p in _pods(lab, "docfast")
    }


def _digests(lab: LabState, namespace: str) -> set[str]:
    """What the kubelets report running: the ``sha256:…`` of each pod's imageID."""
    return {p["status"]["containerStatuses"][0]["imageID"].rsplit("@", 1)[1] for p in _pods(lab, namespace)}


def test_promote_runs_staging_in_production_without_a_failed_check(
    rel_lab: LabState, rel_config: Path
) -> None:
    _stage(rel_lab, "v0.6.0")
    code, events, output = _soaked(rel_config)
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
    # Route "image" ships the digest that soaked: production is pinned to it and runs exactly it.
    staging_digest = _digests(rel_lab, "docfast-staging")
    assert _digests(rel_lab, "docfast") == staging_digest
    prod = kubectl_json(rel_lab, "get", "deploy", "docfast", "-n", "docfast")
    assert prod["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@" + staging_digest.pop())


def control_get_version(lab: LabState) -> str:
    import urllib.request

    address = lab.load_balancer["address"]
    req = urllib.request.Request(f"http://{address}/version", headers={"Host": "docfast.dev"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return str(json.loads(resp.read())["version"])


def test_release_failing_in_production_rolls_back_by_itself(rel_lab: LabState, rel_config: Path) -> None:
    before = _prod_images(rel_lab)
    _stage(rel_lab, "v0.6.1-broken-in-docfast")  # healthy in staging, fails readiness in production
    _soaked(rel_config)
    code, events, output = _run(rel_config, "promote", "--yes")
    assert code == 4, output[-3000:]  # rolled back: production is as it was (the exit-code table)
    assert events[-1]["verdict"] == "ROLLED-BACK" and "back on" in events[-1]["summary"]
    assert events[-1]["report"]["probes"]["http-prod"]["failed"] == 0  # production kept serving
    wait_for(lambda: _prod_images(rel_lab) == before, 60, "production back on its previous image")


def test_promotion_is_refused_while_a_drill_holds_the_lock(rel_lab: LabState, rel_config: Path) -> None:
    _stage(rel_lab, "v0.6.2")
    drill = subprocess.Popen(
        [sys.executable, "-m", "opsconsole", "--config", str(rel_config), "--action", "drill", "--scenario",
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


def _git(lab: LabState, *args: str, cwd: Path | None = None) -> str:
    env = {
        **os.environ,
        "GIT_SSH_COMMAND": f"ssh -F {lab.files['ssh_config']}",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_tag_route_follows_the_pipeline_from_a_pushed_commit_to_production(
    rel_lab: LabState, rel_config: Path, tmp_path: Path
) -> None:
    raw: dict[str, Any] = tomllib.loads(rel_config.read_text())
    raw["release"].update({"route": "tag", "pipeline_timeout_s": 60})
    config = tmp_path / "tag.toml"
    config.write_text(tomli_w.dumps(raw))

    # Staging runs a hand-set image (the test above): not a build of a main commit, so nothing to tag.
    code, _, output = _run(config, "promote", "--dry-run")
    assert code == 3 and "not a build of a main commit" in output, output[-2000:]

    # A developer pushes to main over SSH; the forge's deploy.yml builds main-<sha7> and deploys staging.
    work = tmp_path / "docfast"
    _git(rel_lab, "clone", "-q", "git@git.cloonar.com:openclawd/docfast.git", str(work))
    (work / "VERSION").write_text("version = 1.5.0\n")
    _git(
        rel_lab,
        "-c",
        "user.name=dev",
        "-c",
        "user.email=dev@docfast.dev",
        "commit",
        "-qam",
        "1.5.0",
        cwd=work,
    )
    pushed = _git(rel_lab, "push", "origin", "main", cwd=work)
    assert "deploy.yml" in pushed  # the hook's answer, relayed by git as "remote: …"
    commit = _git(rel_lab, "rev-parse", "HEAD", cwd=work).strip()
    _wait_staging(rel_lab, f"main-{commit[:7]}")
    _soaked(config)

    code, events, output = _run(config, "promote", "--yes")
    assert code == 0, output[-3000:]
    report = events[-1]["report"]
    assert report["tag"] == "v1.4.3" and report["digest_matches_soaked"] is True
    assert report["probes"]["http-prod"]["failed"] == 0 and report["post_check_errors"] == 0
    wait_for(
        lambda: _prod_images(rel_lab) == {"k3s-w1": "v1.4.3", "k3s-w2": "v1.4.3"},
        60,
        "v1.4.3 on both workers",
    )
    assert _digests(rel_lab, "docfast") == _digests(rel_lab, "docfast-staging")
    # The tag is in git, on the commit staging ran, annotated with who promoted it.
    tags = _git(rel_lab, "ls-remote", "--tags", "origin", cwd=work)
    assert f"{commit}\trefs/tags/v1.4.3^{{}}" in tags, tags

    # The dashboard's snapshot shows it: production on v1.4.3, nothing staging runs that it does not.
    proc = opsconsole("--config", str(config), "--action", "status", "--json", check=False, timeout=120)
    doc = json.loads(proc.stdout)
    prod = next(r for r in doc["releases"] if r["environment"] == "prod")
    assert prod["image"].endswith(":v1.4.3") and prod["rollout"] == "complete"
    assert prod["history"][1]["image"].partition("@")[0].endswith(":v0.6.0")
    assert not any(d.startswith(("image:", "digest:")) for d in doc["release_diff"]), doc["release_diff"]


def _soaked(config: Path) -> tuple[int, list[dict[str, Any]], str]:
    """Until staging has soaked (``release.soak_s``) the gate refuses: the dry run that says it would go."""
    result: tuple[int, list[dict[str, Any]], str] = wait_for(
        lambda: (r := _run(config, "promote", "--dry-run"))[0] == 0 and r, 30, "staging soaked"
    )
    return result


def _wait_staging(lab: LabState, tag: str) -> None:
    wait_for(
        lambda: (
            (d := kubectl_json(lab, "get", "deploy", "docfast", "-n", "docfast-staging"))["spec"]["template"][
                "spec"
            ]["containers"][0]["image"].endswith(":" + tag)
            and d["status"].get("updatedReplicas") == 1
            and d["status"].get("readyReplicas") == 1
            and d["status"].get("replicas") == 1
        ),
        60,
        f"staging on {tag}",
    )
