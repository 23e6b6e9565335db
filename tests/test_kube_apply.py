"""Server-side apply on the Kubernetes twin (#24, item 4): ``kubectl apply --server-side`` creates and
updates with field ownership, conflicts name the manager and the fields, ``--force-conflicts`` takes them,
a field dropped from the manifest goes, ``--dry-run=server`` stores nothing — and the project's own
manifests (the watcher's, HA as code) apply server-side as they would on the cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from lab.state import LabState
from tests.conftest import kubectl, kubectl_json, opsconsole, run_action


@pytest.fixture(scope="module")
def lab(fresh_lab: LabState) -> LabState:
    return fresh_lab


def manifest(replicas: int = 2, labels: dict[str, str] | None = None, port: bool = True) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "web", "image": "nginx:1.27"}
    if port:
        container["ports"] = [{"containerPort": 80}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": labels or {"app": "web", "tier": "front"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}},
        },
    }


def apply(lab: LabState, tmp: Path, doc: dict[str, Any], *flags: str, check: bool = True) -> Any:
    path = tmp / "web.yaml"
    path.write_text(yaml.safe_dump(doc))
    return kubectl(lab, "apply", "--server-side", "-f", str(path), *flags, check=check)


def managers(lab: LabState) -> dict[str, dict[str, Any]]:
    obj = kubectl_json(lab, "get", "deployment", "web", "--show-managed-fields")
    return {f"{m['manager']}/{m['operation']}": m for m in obj["metadata"]["managedFields"]}


def test_kubectl_apply_server_side(lab: LabState, tmp_path: Path) -> None:
    created = apply(lab, tmp_path, manifest())
    assert created.stdout.strip() == "deployment.apps/web serverside-applied"
    owned = managers(lab)
    assert set(owned) == {"kubectl/Apply"}
    fields = owned["kubectl/Apply"]["fieldsV1"]
    assert fields["f:spec"]["f:replicas"] == {} and fields["f:spec"]["f:selector"] == {}
    container = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert "." in container and 'k:{"containerPort":80,"protocol":"TCP"}' in container["f:ports"]
    # Another manager takes spec.replicas; applying a different count conflicts, naming it and the field.
    kubectl(lab, "scale", "deployment", "web", "--replicas=4")
    conflict = apply(lab, tmp_path, manifest(replicas=3), check=False)
    assert conflict.returncode == 1
    assert (
        'Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: '
        ".spec.replicas" in conflict.stderr
    )
    assert kubectl_json(lab, "get", "deployment", "web")["spec"]["replicas"] == 4
    # Applying the value it already has is shared ownership, no conflict.
    apply(lab, tmp_path, manifest(replicas=4))
    # --force-conflicts takes the field; the scale's entry loses it (and goes, holding nothing else).
    apply(lab, tmp_path, manifest(replicas=3), "--force-conflicts")
    assert kubectl_json(lab, "get", "deployment", "web")["spec"]["replicas"] == 3
    assert "kubectl/Update" not in managers(lab)
    # What the manifest no longer says, and nobody else owns, is removed.
    apply(lab, tmp_path, manifest(replicas=3, labels={"app": "web"}, port=False))
    live = kubectl_json(lab, "get", "deployment", "web")
    assert live["metadata"]["labels"] == {"app": "web"}
    assert "ports" not in live["spec"]["template"]["spec"]["containers"][0]
    # A server-side dry run answers and stores nothing.
    before = live["metadata"]["generation"]
    dry = apply(lab, tmp_path, manifest(replicas=7), "--dry-run=server")
    assert "(server dry run)" in dry.stdout
    after = kubectl_json(lab, "get", "deployment", "web")
    assert after["spec"]["replicas"] == 3 and after["metadata"]["generation"] == before
    kubectl(lab, "delete", "deployment", "web")


async def test_apply_through_the_python_client(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}}
    with pytest.raises(ApiException) as no_manager:
        await core.patch_namespaced_config_map(
            "applied", "default", body, _content_type="application/apply-patch+yaml"
        )
    assert no_manager.value.status == 422 and "fieldManager: Required value" in no_manager.value.body
    made = await core.patch_namespaced_config_map(
        "applied", "default", body, field_manager="lab-test", _content_type="application/apply-patch+yaml"
    )
    assert made.data == {"a": "1"} and made.metadata.managed_fields[0].manager == "lab-test"
    await core.patch_namespaced_config_map("applied", "default", {"data": {"a": "2"}})  # a merge patch
    with pytest.raises(ApiException) as conflict:
        await core.patch_namespaced_config_map(
            "applied",
            "default",
            {**body, "data": {"a": "3"}},
            field_manager="lab-test",
            _content_type="application/apply-patch+yaml",
        )
    status = json.loads(conflict.value.body)
    assert conflict.value.status == 409 and status["reason"] == "Conflict"
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "OpenAPI-Generator" using v1',
            "field": ".data.a",
        }
    ]
    with pytest.raises(ApiException) as forbidden_force:
        await core.patch_namespaced_config_map("applied", "default", {"data": {"a": "4"}}, force=True)
    assert (
        forbidden_force.value.status == 422
        and "may not be specified for non-apply patch" in forbidden_force.value.body
    )
    await core.delete_namespaced_config_map("applied", "default")


def test_the_projects_manifests_apply_server_side(lab: LabState, tmp_path: Path) -> None:
    """The watcher's in-cluster manifests create everything server-side; HA as code applies onto the live
    cluster, which already has that state: owned jointly, nothing changed, no conflict."""
    out = tmp_path / "watch"
    opsconsole("watch", "--config", lab.files["console_config"], "--export-manifests", str(out))
    applied = kubectl(lab, "apply", "--server-side", "-f", str(out)).stdout
    assert "serverside-applied" in applied and "deployment.apps/opsconsole-watch" in applied
    owner = kubectl_json(
        lab, "-n", "opsconsole", "get", "deployment", "opsconsole-watch", "--show-managed-fields"
    )
    assert [m["manager"] for m in owner["metadata"]["managedFields"]] == ["kubectl"]
    again = kubectl(lab, "apply", "--server-side", "-f", str(out)).stdout
    assert "serverside-applied" in again
    code, _, said = run_action(lab, "ha-export", "--dir", str(tmp_path / "ha"), state=tmp_path / "state")
    assert code == 0, said
    coredns = kubectl_json(lab, "-n", "kube-system", "get", "deployment", "coredns")
    ha = kubectl(lab, "apply", "--server-side", "-k", str(tmp_path / "ha"))
    assert "serverside-applied" in ha.stdout, ha.stderr
    after = kubectl_json(lab, "-n", "kube-system", "get", "deployment", "coredns", "--show-managed-fields")
    assert after["spec"] == coredns["spec"]  # the live state was already the desired one
    assert {m["manager"] for m in after["metadata"]["managedFields"]} >= {"before-first-apply", "kubectl"}
