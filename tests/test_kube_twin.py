"""The Kubernetes twin where users' tools poke it beyond the console's own calls (#24): namespaces' life,
server-side defaulting, the schema's merge keys, tables, ``kubectl auth whoami``, ``rollout undo``, pods
that run to completion, error bodies, ReplicationControllers — each driven by kubectl or the kubernetes
Python client the way a user would."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from lab.state import LabState
from tests.conftest import kube_raw as raw
from tests.conftest import kubectl, kubectl_json, wait_for


@pytest.fixture(scope="module")
def lab(fresh_lab: LabState) -> LabState:
    """A lab of this module's own: it creates and deletes namespaces and rolls Deployments back."""
    return fresh_lab


# ---- 1. namespaces ---------------------------------------------------------------------------------------


def test_deleting_a_namespace_empties_it_first(lab: LabState, tmp_path: Path) -> None:
    kubectl(lab, "create", "namespace", "doomed")
    kubectl(lab, "-n", "doomed", "create", "deployment", "web", "--image=nginx:1.27", "--replicas=5")
    kubectl(lab, "-n", "doomed", "create", "service", "clusterip", "web", "--tcp=80:80")
    held = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "namespace": "doomed",
            "finalizers": ["lab.test/hold"]}, "data": {"a": "b"}}  # fmt: skip
    (tmp_path / "held.json").write_text(json.dumps(held))
    kubectl(lab, "create", "-f", str(tmp_path / "held.json"))
    wait_for(
        lambda: (
            len(
                kubectl_json(lab, "-n", "doomed", "get", "pods", "--field-selector=status.phase=Running")[
                    "items"
                ]
            )
            == 5
        ),
        30,
        "five running pods",
    )
    # A PUT of the namespace does not take its finalizer away: only /finalize does.
    ns = kubectl_json(lab, "get", "namespace", "doomed")
    ns["spec"] = {}
    (tmp_path / "ns.json").write_text(json.dumps(ns))
    kubectl(lab, "replace", "-f", str(tmp_path / "ns.json"))
    kubectl(lab, "delete", "namespace", "doomed", "--wait=false")
    ns = kubectl_json(lab, "get", "namespace", "doomed")
    assert ns["status"]["phase"] == "Terminating" and ns["spec"]["finalizers"] == ["kubernetes"]
    assert ns["metadata"]["deletionTimestamp"]
    refused = kubectl(lab, "-n", "doomed", "create", "configmap", "late", "--from-literal=a=b", check=False)
    assert refused.returncode == 1
    assert (
        'configmaps "late" is forbidden: unable to create new content in namespace doomed because it is '
        "being terminated" in refused.stderr
    )

    def conditions() -> dict[str, tuple[str, str]] | None:
        found = kubectl_json(lab, "get", "namespace", "doomed").get("status", {}).get("conditions") or []
        by_type = {c["type"]: (c["status"], c["message"]) for c in found}
        return by_type if by_type.get("NamespaceFinalizersRemaining", ("",))[0] == "True" else None

    # Everything goes but the ConfigMap its finalizer holds, and the controller says so in its words.
    said = wait_for(conditions, 30, "the namespace held by a finalizer")
    assert said["NamespaceContentRemaining"] == (
        "True",
        "Some resources are remaining: configmaps. has 1 resource instances",
    )
    assert said["NamespaceFinalizersRemaining"][1] == (
        "Some content in the namespace has finalizers remaining: configmaps. in 1 resource instances"
    )
    assert said["NamespaceDeletionContentFailure"][0] == "False"
    for kind in ("pods", "deployments", "replicasets", "services", "endpoints", "serviceaccounts"):
        left = kubectl_json(lab, "get", kind, "-A", "--field-selector=metadata.namespace=doomed")["items"]
        assert left == [], f"{kind} left behind: {[o['metadata']['name'] for o in left]}"
    kubectl(
        lab,
        "-n",
        "doomed",
        "patch",
        "configmap",
        "held",
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":null}}',
    )
    kubectl(lab, "wait", "--for=delete", "namespace/doomed", "--timeout=60s")  # silent if already gone
    missing = kubectl(lab, "get", "namespace", "doomed", check=False)
    assert missing.returncode == 1 and 'namespaces "doomed" not found' in missing.stderr
    # Deleted in the foreground, a namespace still goes once empty (the garbage collector's finalizer too).
    kubectl(lab, "create", "namespace", "foreground")
    kubectl(lab, "delete", "namespace", "foreground", "--cascade=foreground", "--timeout=60s")
    assert kubectl(lab, "get", "namespace", "foreground", check=False).returncode == 1
    whole = kubectl(lab, "delete", "--raw", "/api/v1/namespaces", check=False)  # no deletecollection
    assert whole.returncode == 1 and "(MethodNotAllowed)" in whole.stderr


async def test_what_every_namespace_holds(lab: LabState, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    created = await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="fresh")))
    assert created.status.phase == "Active" and created.spec.finalizers == ["kubernetes"]
    assert created.metadata.labels == {"kubernetes.io/metadata.name": "fresh"}

    async def has_both() -> bool:
        accounts = {a.metadata.name for a in (await core.list_namespaced_service_account("fresh")).items}
        maps = {m.metadata.name: m for m in (await core.list_namespaced_config_map("fresh")).items}
        return "default" in accounts and "kube-root-ca.crt" in maps

    for _ in range(100):
        if await has_both():
            break
        await asyncio.sleep(0.05)
    assert await has_both()
    ca = await core.read_namespaced_config_map("kube-root-ca.crt", "fresh")
    assert ca.data["ca.crt"] == Path(lab.files["ca"]).read_text()
    assert "kube-apiserver" in ca.metadata.annotations["kubernetes.io/description"]
    svc = await core.read_namespaced_service("kubernetes", "default")
    assert (svc.spec.cluster_ip, svc.spec.ports[0].port, svc.spec.ports[0].target_port) == (
        "10.43.0.1",
        443,
        6443,
    )
    assert svc.metadata.labels == {"component": "apiserver", "provider": "kubernetes"}
    with pytest.raises(ApiException) as protected:
        await core.delete_namespace("kube-system")
    assert protected.value.status == 403
    assert json.loads(protected.value.body)["message"] == (
        'namespaces "kube-system" is forbidden: this namespace may not be deleted'
    )
    await core.delete_namespace("fresh")


# ---- 2. server-side defaults -----------------------------------------------------------------------------


async def test_create_answers_with_the_defaulted_object(api: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    pod = await core.create_namespaced_pod(
        "default",
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="defaults"),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]),
        ),
    )
    try:
        assert pod.status.phase == "Pending" and pod.status.qos_class == "BestEffort"
        spec = pod.spec
        assert (spec.restart_policy, spec.dns_policy, spec.scheduler_name) == (
            "Always",
            "ClusterFirst",
            "default-scheduler",
        )
        assert (spec.service_account_name, spec.termination_grace_period_seconds) == ("default", 30)
        assert {t.key: t.toleration_seconds for t in spec.tolerations} == {
            "node.kubernetes.io/not-ready": 300,
            "node.kubernetes.io/unreachable": 300,
        }
        c = spec.containers[0]
        assert (c.image_pull_policy, c.termination_message_path) == ("Always", "/dev/termination-log")
        assert c.volume_mounts[0].mount_path == "/var/run/secrets/kubernetes.io/serviceaccount"
    finally:
        await core.delete_namespaced_pod("defaults", "default", grace_period_seconds=0)
    svc = await core.create_namespaced_service(
        "default",
        client.V1Service(
            metadata=client.V1ObjectMeta(name="defaults"),
            spec=client.V1ServiceSpec(selector={"app": "x"}, ports=[client.V1ServicePort(port=8080)]),
        ),
    )
    try:
        assert svc.spec.cluster_ip and svc.spec.cluster_ip.startswith("10.43.")
        assert svc.spec.cluster_ips == [svc.spec.cluster_ip]
        assert (svc.spec.type, svc.spec.session_affinity, svc.spec.ip_families) == (
            "ClusterIP",
            "None",
            ["IPv4"],
        )
        assert svc.spec.ports[0].target_port == 8080 and svc.spec.ports[0].protocol == "TCP"
        assert svc.status.load_balancer is not None
        # Defaulting is idempotent: writing the object back as it was answered changes nothing.
        again = await core.replace_namespaced_service("defaults", "default", svc)
        assert again.metadata.resource_version == svc.metadata.resource_version
        # What the server allocated stays, whatever a PUT leaves out; changing it is refused.
        bare = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "defaults", "resourceVersion": again.metadata.resource_version},
            "spec": {"ports": [{"port": 8080}]},
        }
        kept = await core.replace_namespaced_service("defaults", "default", bare)
        assert kept.spec.cluster_ip == svc.spec.cluster_ip
        moved = {**bare, "metadata": {"name": "defaults"}, "spec": {**bare["spec"], "clusterIP": "10.43.9.9"}}
        with pytest.raises(ApiException) as immutable:
            await core.replace_namespaced_service("defaults", "default", moved)
        assert immutable.value.status == 422 and "may not change once set" in immutable.value.body
        with pytest.raises(ApiException) as taken:
            await core.create_namespaced_service(
                "default",
                client.V1Service(
                    metadata=client.V1ObjectMeta(name="taken"),
                    spec=client.V1ServiceSpec(
                        cluster_ip=svc.spec.cluster_ip, ports=[client.V1ServicePort(port=1)]
                    ),
                ),
            )
        assert taken.value.status == 422 and "provided IP is already allocated" in taken.value.body
    finally:
        await core.delete_namespaced_service("defaults", "default")
    d = await apps.create_namespaced_deployment(
        "default",
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="defaults"),
            spec=client.V1DeploymentSpec(
                selector=client.V1LabelSelector(match_labels={"app": "defaults"}),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels={"app": "defaults"}),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx:1.27")]),
                ),
            ),
        ),
    )
    try:
        assert d.spec.replicas == 1 and d.spec.revision_history_limit == 10
        assert d.spec.strategy.type == "RollingUpdate"
        assert (d.spec.strategy.rolling_update.max_surge, d.spec.strategy.rolling_update.max_unavailable) == (
            "25%",
            "25%",
        )
        assert d.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
    finally:
        await apps.delete_namespaced_deployment("defaults", "default")


async def test_what_the_real_server_refuses_or_tolerates(api: client.ApiClient) -> None:
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    # A Job's pods must run to completion: restartPolicy Always (the pod spec's default) is refused.
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "forever"},
           "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}  # fmt: skip
    with pytest.raises(ApiException) as policy:
        await batch.create_namespaced_job("default", job)
    assert policy.value.status == 422
    assert (
        'spec.template.spec.restartPolicy: Unsupported value: "Always"'
        in json.loads(policy.value.body)["message"]
    )
    # An env var named twice is accepted (the real server warns), and so is writing it back.
    twice = [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]
    pod = await core.create_namespaced_pod(
        "default",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "twice"},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "env": twice}]},
        },
    )
    assert [e.value for e in pod.spec.containers[0].env] == ["1", "2"]
    await core.patch_namespaced_pod("twice", "default", {"metadata": {"labels": {"x": "y"}}})
    await core.delete_namespaced_pod("twice", "default", grace_period_seconds=0)
    # An apply into a namespace that does not exist is 404, as a create.
    with pytest.raises(ApiException) as missing:
        await core.patch_namespaced_config_map(
            "c", "nowhere", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
            field_manager="t", _content_type="application/apply-patch+yaml",
        )  # fmt: skip
    assert missing.value.status == 404 and 'namespaces \\"nowhere\\" not found' in missing.value.body


# ---- 3. strategic merge keys from the schema ---------------------------------------------------------------


async def test_strategic_merge_keys_come_from_the_schema(api: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    await core.create_namespaced_service(
        "default",
        client.V1Service(
            metadata=client.V1ObjectMeta(name="merge"),
            spec=client.V1ServiceSpec(ports=[client.V1ServicePort(name="http", port=80, target_port=8080)]),
        ),
    )
    try:  # Service ports merge on `port`: a new named port joins port 80
        merged = await core.patch_namespaced_service(
            "merge", "default", {"spec": {"ports": [{"name": "metrics", "port": 9090}]}}
        )
        assert [(p.name, p.port, p.target_port) for p in merged.spec.ports] == [
            ("http", 80, 8080),
            ("metrics", 9090, 9090),
        ]
        changed = await core.patch_namespaced_service(
            "merge", "default", {"spec": {"ports": [{"port": 80, "targetPort": 8081}]}}
        )
        assert [p.target_port for p in changed.spec.ports] == [8081, 9090]
    finally:
        await core.delete_namespaced_service("merge", "default")
    # A Deployment's containers merge on `name`, their ports on `containerPort`; tolerations are atomic.
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": "merge"}),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="a", image="nginx:1.27", ports=[client.V1ContainerPort(container_port=80)]
                ),
                client.V1Container(name="b", image="nginx:1.27"),
            ],
            tolerations=[client.V1Toleration(key="first", operator="Exists")],
        ),
    )
    await apps.create_namespaced_deployment(
        "default",
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="merge"),
            spec=client.V1DeploymentSpec(
                replicas=0, selector=client.V1LabelSelector(match_labels={"app": "merge"}), template=template
            ),
        ),
    )
    try:
        patch = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "a", "ports": [{"containerPort": 9464, "name": "metrics"}]}],
                        "tolerations": [{"key": "second", "operator": "Exists"}],
                    }
                }
            }
        }
        after = await apps.patch_namespaced_deployment("merge", "default", patch)
        a, b = after.spec.template.spec.containers
        assert (a.name, b.name) == ("a", "b") and [p.container_port for p in a.ports] == [80, 9464]
        assert [t.key for t in after.spec.template.spec.tolerations] == ["second"]
    finally:
        await apps.delete_namespaced_deployment("merge", "default")
    # A Pod's containers merge on `name` (an image changed in one), its finalizers as a set.
    two = [{"name": "a", "image": "nginx:1.27"}, {"name": "b", "image": "nginx:1.27"}]
    await core.create_namespaced_pod(
        "default",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "merge", "finalizers": ["lab.test/a"]},
            "spec": {"containers": two},
        },
    )
    patched = await core.patch_namespaced_pod(
        "merge",
        "default",
        {
            "metadata": {"finalizers": ["lab.test/b"]},
            "spec": {"containers": [{"name": "b", "image": "nginx:1.28"}]},
        },
    )
    assert [(c.name, c.image) for c in patched.spec.containers] == [("a", "nginx:1.27"), ("b", "nginx:1.28")]
    assert patched.metadata.finalizers == ["lab.test/a", "lab.test/b"]
    await core.patch_namespaced_pod("merge", "default", {"metadata": {"finalizers": None}})
    await core.delete_namespaced_pod("merge", "default", grace_period_seconds=0)
    # A Node's taints are atomic (replaced), its conditions merge on `type`.
    node = await core.read_node("k3s-w2")
    tainted = await core.patch_node(
        "k3s-w2", {"spec": {"taints": [{"key": "lab/a", "effect": "NoSchedule"}]}}
    )
    assert [t.key for t in tainted.spec.taints] == ["lab/a"]
    untainted = await core.patch_node("k3s-w2", {"spec": {"taints": None}})
    assert not untainted.spec.taints and not node.spec.taints
    status = await core.patch_node_status(
        "k3s-w2", {"status": {"conditions": [{"type": "LabProbe", "status": "True", "reason": "Lab"}]}}
    )
    kinds = [c.type for c in status.status.conditions]
    assert "LabProbe" in kinds and "Ready" in kinds  # merged into the list, not replacing it


# ---- 5. tables -------------------------------------------------------------------------------------------


def test_kubectl_sort_by_gets_whole_objects(lab: LabState) -> None:
    events = kubectl(lab, "get", "events", "-A", "--sort-by=.lastTimestamp").stdout
    assert "No resources found" not in events and "Scheduled" in events
    pods = kubectl(lab, "get", "pods", "-n", "kube-system", "--sort-by=.status.startTime").stdout.splitlines()
    assert len(pods) > 4 and pods[0].split()[:2] == ["NAME", "READY"]
    # kube-system's pods are the seed's and stay put in this module (a NoSchedule taint on a node keeps
    # Traefik's there): their start times are the table's order
    listed = kubectl_json(lab, "get", "pods", "-n", "kube-system")["items"]
    by_name = {p["metadata"]["name"]: p["status"].get("startTime", "") for p in listed}
    order = [by_name[line.split()[0]] for line in pods[1:]]
    assert order == sorted(order)


async def test_table_object_policies_and_partial_metadata(lab: LabState) -> None:
    table = "application/json;as=Table;v=v1;g=meta.k8s.io"
    for include, expect in (("Object", "Pod"), ("Metadata", "PartialObjectMetadata"), ("None", None)):
        _, _, body = await raw(
            lab, "GET", f"/api/v1/namespaces/docfast/pods?includeObject={include}", headers={"Accept": table}
        )
        rows = json.loads(body)["rows"]
        assert rows and all((r["object"] or {}).get("kind") == expect for r in rows), include
    status, _, body = await raw(lab, "GET", "/api/v1/pods?includeObject=All", headers={"Accept": table})
    assert status == 400 and b'unrecognized includeObject value: \\"All\\"' in body
    accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    _, _, body = await raw(lab, "GET", "/api/v1/namespaces/docfast/pods", headers={"Accept": accept})
    doc = json.loads(body)
    assert doc["kind"] == "PartialObjectMetadataList" and doc["apiVersion"] == "meta.k8s.io/v1"
    assert doc["items"] and all(set(i) == {"kind", "apiVersion", "metadata"} for i in doc["items"])
    status, _, _ = await raw(
        lab, "GET", "/api/v1/pods", headers={"Accept": "application/json;as=Unknown;g=meta.k8s.io;v=v1"}
    )
    assert status == 406


# ---- 8. the smaller ones --------------------------------------------------------------------------------


def test_auth_whoami(lab: LabState) -> None:
    out = kubectl(lab, "auth", "whoami").stdout
    assert "Username    system:admin" in out and "system:masters" in out
    deployer = kubectl(lab, "auth", "whoami", context="deployer").stdout
    assert "system:serviceaccount:docfast:deployer" in deployer


def test_rollout_undo_reuses_the_revision(lab: LabState) -> None:
    kubectl(lab, "create", "namespace", "undo")
    kubectl(lab, "-n", "undo", "create", "deployment", "web", "--image=nginx:1.27")
    kubectl(lab, "-n", "undo", "rollout", "status", "deployment/web", "--timeout=60s")
    kubectl(lab, "-n", "undo", "set", "image", "deployment/web", "nginx=nginx:1.28")
    kubectl(lab, "-n", "undo", "rollout", "status", "deployment/web", "--timeout=60s")
    first = {r["metadata"]["name"] for r in kubectl_json(lab, "-n", "undo", "get", "rs")["items"]}
    assert len(first) == 2
    kubectl(lab, "-n", "undo", "rollout", "undo", "deployment/web")
    kubectl(lab, "-n", "undo", "rollout", "status", "deployment/web", "--timeout=60s")
    sets = kubectl_json(lab, "-n", "undo", "get", "rs")["items"]
    assert {r["metadata"]["name"] for r in sets} == first, "rollout undo made a third ReplicaSet"
    live = next(r for r in sets if r["spec"]["replicas"] == 1)
    notes = live["metadata"]["annotations"]
    assert (
        notes["deployment.kubernetes.io/revision"],
        notes["deployment.kubernetes.io/revision-history"],
    ) == ("3", "1")
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    kubectl(lab, "delete", "namespace", "undo", "--wait=false")


def test_pods_that_run_to_completion_run_their_command(lab: LabState) -> None:
    kubectl(lab, "create", "namespace", "runs")
    run = ("-n", "runs", "run", "--image=busybox", "--restart=Never")
    kubectl(lab, *run, "ok", "--", "sh", "-c", "echo hello from $HOSTNAME")
    kubectl(lab, *run, "bad", "--", "sh", "-c", "echo oops; exit 3")
    kubectl(lab, *run, "nope", "--", "no-such-program")

    def phases() -> dict[str, str] | None:
        pods = kubectl_json(lab, "-n", "runs", "get", "pods")["items"]
        found = {p["metadata"]["name"]: p["status"].get("phase", "") for p in pods}
        return found if all(v in ("Succeeded", "Failed") for v in found.values()) else None

    assert wait_for(phases, 30, "the pods to finish") == {
        "ok": "Succeeded",
        "bad": "Failed",
        "nope": "Failed",
    }
    assert kubectl(lab, "-n", "runs", "logs", "ok").stdout == "hello from ok\n"
    bad = kubectl_json(lab, "-n", "runs", "get", "pod", "bad")["status"]["containerStatuses"][0]["state"][
        "terminated"
    ]
    assert (bad["exitCode"], bad["reason"]) == (3, "Error")
    nope = kubectl_json(lab, "-n", "runs", "get", "pod", "nope")["status"]["containerStatuses"][0]["state"]
    assert nope["terminated"]["reason"] == "StartError" and nope["terminated"]["exitCode"] == 128
    table = kubectl(lab, "-n", "runs", "get", "pods").stdout
    assert "Completed" in table and "Error" in table and "StartError" in table
    # A Job whose pod fails is retried up to its backoffLimit, then fails as the controller says.
    kubectl(lab, "-n", "runs", "create", "job", "fails", "--image=busybox", "--", "sh", "-c", "exit 1")
    kubectl(lab, "-n", "runs", "patch", "job", "fails", "--type=merge", "-p", '{"spec":{"backoffLimit":1}}')
    failed = kubectl(lab, "-n", "runs", "wait", "--for=condition=Failed", "job/fails", "--timeout=60s")
    assert "condition met" in failed.stdout
    job = kubectl_json(lab, "-n", "runs", "get", "job", "fails")
    cond = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert (cond["reason"], cond["message"]) == (
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )
    assert job["status"]["failed"] == 2
    kubectl(lab, "delete", "namespace", "runs", "--wait=false")


async def test_error_bodies_are_the_servers_bytes(lab: LabState) -> None:
    status, headers, body = await raw(lab, "GET", "/api/v1/namespaces/default/pods/none")
    assert status == 404 and headers["Content-Type"].startswith("application/json")
    assert body == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"pods \\"none\\" not found","reason":"NotFound","details":{"name":"none","kind":"pods"},'
        b'"code":404}\n'
    )
    status, _, body = await raw(lab, "GET", "/apis/apps/v1/namespaces/default/deployments/none")
    assert json.loads(body)["details"] == {"name": "none", "group": "apps", "kind": "deployments"}
    assert list(json.loads(body)) == [
        "kind",
        "apiVersion",
        "metadata",
        "status",
        "message",
        "reason",
        "details",
        "code",
    ]


def test_replication_controllers_and_apiservices_are_served(lab: LabState, tmp_path: Path) -> None:
    resources = kubectl(lab, "api-resources", "-o", "name").stdout.split()
    assert "replicationcontrollers" in resources and "apiservices.apiregistration.k8s.io" in resources
    rc = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "legacy", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": "legacy"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
            },
        },
    }
    path = tmp_path / "rc.json"
    path.write_text(json.dumps(rc))
    kubectl(lab, "apply", "-f", str(path))
    created = kubectl_json(lab, "get", "rc", "legacy")
    assert created["spec"]["selector"] == {"app": "legacy"}  # defaulted from the template's labels
    wait_for(
        lambda: kubectl_json(lab, "get", "rc", "legacy").get("status", {}).get("readyReplicas") == 2,
        30,
        "the RC's two pods ready",
    )
    kubectl(lab, "scale", "rc", "legacy", "--replicas=1")
    wait_for(
        lambda: len(kubectl_json(lab, "get", "pods", "-l", "app=legacy")["items"]) == 1, 30, "scaled to one"
    )
    kubectl(lab, "delete", "rc", "legacy")
    services = {
        line.split()[0]: line.split()[1:3] for line in kubectl(lab, "get", "apiservices").stdout.splitlines()
    }
    assert services["v1.apps"] == ["Local", "True"]
    assert services["v1beta1.metrics.k8s.io"] == ["kube-system/metrics-server", "True"]
