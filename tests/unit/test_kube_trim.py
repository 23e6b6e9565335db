"""What the console's watch source keeps of an object: everything it reads, none of the server's own
bookkeeping (the same path runs against the lab in tests/test_kube_api.py)."""

from __future__ import annotations

from typing import Any

from console.sources.kube import LAST_APPLIED, trim


def _pod() -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web-1",
            "annotations": {LAST_APPLIED: "{}", "team": "ops"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
        },
        "spec": {
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "kube-api-access-x7k2p", "projected": {"sources": []}},
            ],
            "initContainers": [{"name": "init", "volumeMounts": [{"name": "kube-api-access-x7k2p"}]}],
            "containers": [
                {"name": "web", "volumeMounts": [{"name": "data"}, {"name": "kube-api-access-x7k2p"}]}
            ],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}],
        },
    }


def test_the_servers_bookkeeping_goes_the_rest_stays() -> None:
    pod = trim(_pod())
    assert "managedFields" not in pod["metadata"]
    assert pod["metadata"]["annotations"] == {"team": "ops"}
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["data"]
    assert pod["spec"]["initContainers"][0]["volumeMounts"] == []
    assert pod["spec"]["containers"][0]["volumeMounts"] == [{"name": "data"}]
    assert pod["spec"]["tolerations"] == _pod()["spec"]["tolerations"]


def test_objects_without_those_parts_are_unchanged() -> None:
    node = {"metadata": {"name": "k3s-w1"}, "spec": {"podCIDR": "10.42.1.0/24"}, "status": {}}
    deployment = {"metadata": {"name": "web"}, "spec": {"template": {"spec": {"volumes": []}}}}
    assert trim({**node}) == node
    assert trim({**deployment}) == deployment
