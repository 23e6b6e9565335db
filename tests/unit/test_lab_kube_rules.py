"""The Kubernetes twin's pure rules (#24): defaulting, schema-driven merging, field sets, server-side
apply's merge order and conflicts, the control plane's clocks, protobuf bodies.  The same paths run end to
end in tests/test_kube_twin.py, tests/test_kube_apply.py and tests/test_node_timing.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lab.kube import defaults, fieldsets
from lab.kube.apply import FieldManager, merge
from lab.kube.errors import KubeError
from lab.kube.patch import strategic_merge
from lab.kube.protobuf import MAGIC, decode
from lab.kube.resources import Registry
from lab.kube.schema import root
from lab.kube.timing import Timing, component_args, go_duration

REGISTRY = Registry()


def res(group: str, version: str, plural: str) -> Any:
    found = REGISTRY.get(group, version, plural)
    assert found is not None
    return found


DEPLOYMENTS = res("apps", "v1", "deployments")
SERVICES = res("", "v1", "services")
PODS = res("", "v1", "pods")


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]
                },
            },
        },
    }


def test_defaulting_is_idempotent_and_per_kind() -> None:
    once = deployment()
    defaults.default(DEPLOYMENTS, once)
    twice = copy.deepcopy(once)
    defaults.default(DEPLOYMENTS, twice)
    assert once == twice
    spec = once["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    container = spec["template"]["spec"]["containers"][0]
    assert container["ports"][0]["protocol"] == "TCP" and container["imagePullPolicy"] == "IfNotPresent"
    assert "enableServiceLinks" not in spec["template"]["spec"]  # a Pod's default, not a template's
    assert (
        defaults.pull_policy("nginx") == "Always"
        and defaults.pull_policy("nginx@sha256:ab") == "IfNotPresent"
    )
    svc = {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": None}]}}
    defaults.default(SERVICES, svc)
    assert svc["spec"]["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}


def test_qos_classes() -> None:
    def spec(resources: dict[str, Any]) -> dict[str, Any]:
        return {"containers": [{"name": "c", "resources": resources}]}

    assert defaults.qos_class(spec({})) == "BestEffort"
    assert defaults.qos_class(spec({"requests": {"cpu": "100m"}})) == "Burstable"
    both = {"cpu": "1", "memory": "1Gi"}
    assert defaults.qos_class(spec({"limits": both, "requests": both})) == "Guaranteed"


def test_cluster_ips_are_allocated_from_the_service_cidr() -> None:
    svc: dict[str, Any] = {"metadata": {"name": "a", "namespace": "x"}, "spec": {}}
    defaults.allocate_cluster_ips(svc, ["10.43.0.11"])
    assert svc["spec"]["clusterIP"] == "10.43.0.12" and svc["spec"]["ipFamilyPolicy"] == "SingleStack"
    with pytest.raises(KubeError) as taken:
        defaults.allocate_cluster_ips(
            {"metadata": {"name": "b"}, "spec": {"clusterIP": "10.43.0.11"}}, ["10.43.0.11"]
        )
    assert taken.value.code == 422 and "already allocated" in taken.value.message
    with pytest.raises(KubeError):
        defaults.allocate_cluster_ips({"metadata": {"name": "c"}, "spec": {"clusterIP": "10.44.0.1"}}, [])


def test_strategic_merge_reads_the_schema() -> None:
    svc = {"spec": {"ports": [{"port": 80, "name": "http"}]}}
    out = strategic_merge(svc, {"spec": {"ports": [{"port": 9090, "name": "metrics"}]}}, root(SERVICES))
    assert [p["port"] for p in out["spec"]["ports"]] == [80, 9090]
    pod = {
        "metadata": {"finalizers": ["a"]},
        "spec": {"tolerations": [{"key": "a"}], "containers": [{"name": "c"}]},
    }
    patch = {
        "metadata": {"finalizers": ["b"]},
        "spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "d"}]},
    }
    out = strategic_merge(pod, patch, root(PODS))
    assert out["metadata"]["finalizers"] == ["a", "b"]  # a set
    assert out["spec"]["tolerations"] == [{"key": "b"}]  # atomic
    assert [c["name"] for c in out["spec"]["containers"]] == ["c", "d"]  # merged on name
    kept = strategic_merge(
        {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
        root(DEPLOYMENTS),
    )
    assert kept["spec"]["strategy"] == {"type": "Recreate"}
    ordered = strategic_merge(
        {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}},
        {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}},
        root(PODS),
    )
    assert [c["name"] for c in ordered["spec"]["containers"]] == ["b", "a"]


def test_field_sets_as_the_api_writes_them() -> None:
    paths = fieldsets.field_set(deployment(), root(DEPLOYMENTS), "drop")
    encoded = fieldsets.encode(paths)
    assert encoded["f:spec"]["f:selector"] == {}  # LabelSelector is an atomic struct
    assert encoded["f:metadata"] == {"f:labels": {"f:app": {}}}  # name and namespace are never owned
    item = encoded["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert next(iter(item)) == "." and 'k:{"containerPort":80,"protocol":"TCP"}' in item["f:ports"]
    assert fieldsets.decode(encoded) == paths
    port = next(p for p in paths if p[-1] == ("f", "containerPort"))
    assert (
        fieldsets.render(port)
        == '.spec.template.spec.containers[name="web"].ports[containerPort=80,protocol="TCP"].containerPort'
    )
    with pytest.raises(fieldsets.SchemaError, match="field not declared in schema"):
        fieldsets.field_set({"spec": {"replica": 1}}, root(DEPLOYMENTS))


@pytest.mark.parametrize(
    ("live", "config", "merged"),
    [
        ("abc", "ca", "bca"),
        ("abc", "ad", "abcd"),
        ("ab", "da", "dab"),
    ],
)
def test_associative_lists_merge_in_structured_merge_diffs_order(live: str, config: str, merged: str) -> None:
    schema = root(PODS).child("spec").child("containers")

    def items(names: str) -> list[dict[str, str]]:
        return [{"name": n} for n in names]

    out = merge(items(live), items(config), schema)
    assert "".join(c["name"] for c in out) == merged


def test_apply_conflicts_force_and_prune() -> None:
    fm = FieldManager(DEPLOYMENTS)
    created = fm.apply(None, deployment(), "ci", force=False)
    scaled = copy.deepcopy(created)
    scaled["spec"]["replicas"] = 5
    fm.update(created, scaled, "kubectl-scale")
    bigger = deployment()
    bigger["spec"]["replicas"] = 3
    with pytest.raises(KubeError) as conflict:
        fm.apply(scaled, bigger, "ci", force=False)
    assert conflict.value.code == 409
    assert conflict.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-scale" using apps/v1: .spec.replicas'
    )
    forced = fm.apply(scaled, bigger, "ci", force=True)
    assert forced["spec"]["replicas"] == 3
    assert [m["manager"] for m in forced["metadata"]["managedFields"]] == ["ci"]
    smaller = copy.deepcopy(bigger)
    del smaller["metadata"]["labels"]
    pruned = fm.apply(forced, smaller, "ci", force=False)
    assert "labels" not in pruned["metadata"]


def test_control_plane_clocks() -> None:
    assert go_duration("50s") == 50 and go_duration("1m30s") == 90 and go_duration("500ms") == 0.5
    with pytest.raises(ValueError):
        go_duration("soon")
    stock = Timing()
    assert (stock.node_monitor_grace_period, stock.node_monitor_period, stock.lease_renew_interval) == (
        50,
        5,
        10,
    )
    argv = [
        "server",
        "--kube-controller-manager-arg=node-monitor-grace-period=20s",
        "--kubelet-arg",
        "node-lease-duration-seconds=20",
    ]
    found = component_args(argv)
    tuned = stock.with_args(found["kube-controller-manager-arg"], found["kubelet-arg"])
    assert tuned.node_monitor_grace_period == 20 and tuned.lease_renew_interval == 5
    with pytest.raises(ValueError, match="node-monitor-period"):
        stock.with_args(["node-monitor-period=0s"])


def _field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_protobuf_bodies_decode_as_json() -> None:
    meta = _field(1, b"made") + _field(11, _field(1, b"team") + _field(2, b"ops"))
    namespace = _field(1, meta)
    type_meta = _field(1, b"v1") + _field(2, b"Namespace")
    body = MAGIC + _field(1, type_meta) + _field(2, namespace)
    assert decode(body) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "made", "labels": {"team": "ops"}},
    }
    with pytest.raises(ValueError):
        decode(b"not protobuf")
