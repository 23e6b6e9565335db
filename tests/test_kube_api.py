"""Kubernetes API semantics through the `kubernetes.aio` client over real TLS: what a real server
accepts and what it refuses (409, 410, 415, 400, 429, 403), lists, watches and subresources."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from kubernetes.aio import client, config
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.watch import Watch

from lab.cli import control
from lab.state import LabState
from tests.conftest import kube_raw


@pytest.fixture(scope="module")
def lab(fresh_lab: LabState) -> LabState:
    """Its own lab: these checks count pods, so no other test may be moving them."""
    return fresh_lab


async def test_stale_resource_version_is_a_conflict(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="rv-test"), data={"a": "1"})
    created = await core.create_namespaced_config_map("default", cm)
    created.data = {"a": "2"}
    updated = await core.replace_namespaced_config_map("rv-test", "default", created)
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    created.data = {"a": "3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as err:
        await core.replace_namespaced_config_map("rv-test", "default", created)
    assert err.value.status == 409
    body = json.loads(err.value.body)
    assert (body["kind"], body["reason"]) == ("Status", "Conflict")
    assert "the object has been modified" in body["message"]
    await core.delete_namespaced_config_map("rv-test", "default")
    with pytest.raises(ApiException) as gone:
        await core.read_namespaced_config_map("rv-test", "default")
    assert gone.value.status == 404 and json.loads(gone.value.body)["reason"] == "NotFound"


async def _raw_patch(
    lab: LabState, path: str, body: object, content_type: str
) -> tuple[int, dict[str, object]]:
    status, _, answer = await kube_raw(lab, "PATCH", path, body, {"Content-Type": content_type})
    return status, json.loads(answer)


async def test_patch_content_types(lab: LabState, api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    custom = client.CustomObjectsApi(api)
    # The client sends a dict as strategic-merge-patch: fine for a Deployment …
    await apps.patch_namespaced_deployment(
        "docfast", "docfast-staging", {"metadata": {"annotations": {"lab/patched": "smp"}}}
    )
    # … refused with 415 for a custom resource, as a real API server does.
    with pytest.raises(ApiException) as err:
        await custom.patch_cluster_custom_object(
            "cert-manager.io",
            "v1",
            "clusterissuers",
            "letsencrypt-prod",
            {"metadata": {"labels": {"a": "b"}}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert err.value.status == 415
    merged = await custom.patch_cluster_custom_object(
        "cert-manager.io",
        "v1",
        "clusterissuers",
        "letsencrypt-prod",
        {"metadata": {"labels": {"a": "b"}}},
        _content_type="application/merge-patch+json",
    )
    assert merged["metadata"]["labels"]["a"] == "b"
    # A JSON object sent as json-patch is a 400.  (kubernetes-python quietly re-labels a non-list
    # json-patch as strategic-merge, so this one goes out raw.)
    status, body = await _raw_patch(
        lab,
        "/apis/apps/v1/namespaces/docfast-staging/deployments/docfast",
        {"op": "add"},
        "application/json-patch+json",
    )
    assert status == 400 and body["reason"] == "BadRequest"
    status, body = await _raw_patch(
        lab,
        "/apis/apps/v1/namespaces/docfast-staging/deployments/docfast",
        {"spec": {}},
        "application/x-unknown",
    )
    assert status == 415 and body["reason"] == "UnsupportedMediaType"
    patched = await apps.patch_namespaced_deployment(
        "docfast",
        "docfast-staging",
        [{"op": "add", "path": "/metadata/annotations/lab~1jsonpatch", "value": "yes"}],
        _content_type="application/json-patch+json",
    )
    assert patched.metadata.annotations["lab/jsonpatch"] == "yes"


async def test_strategic_merge_keys(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    before = await apps.read_namespaced_deployment("docfast", "docfast")
    env_before = [e.name for e in before.spec.template.spec.containers[0].env]
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "docfast", "env": [{"name": "LAB_FLAG", "value": "1"}]}],
                    "tolerations": [
                        {
                            "key": "node.kubernetes.io/unreachable",
                            "operator": "Exists",
                            "effect": "NoExecute",
                            "tolerationSeconds": 10,
                        }
                    ],
                }
            }
        }
    }
    after = await apps.patch_namespaced_deployment("docfast", "docfast", patch)
    container = after.spec.template.spec.containers[0]
    assert [e.name for e in container.env] == [*env_before, "LAB_FLAG"]  # merged by name
    assert container.image == before.spec.template.spec.containers[0].image  # untouched fields kept
    assert len(after.spec.template.spec.tolerations) == 1  # tolerations are replaced, not merged
    await apps.patch_namespaced_deployment(
        "docfast",
        "docfast",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "docfast", "env": [{"name": "LAB_FLAG", "$patch": "delete"}]}
                        ],
                        "tolerations": [t.to_dict() for t in before.spec.template.spec.tolerations],
                    }
                }
            }
        },
    )
    restored = await apps.read_namespaced_deployment("docfast", "docfast")
    assert [e.name for e in restored.spec.template.spec.containers[0].env] == env_before


async def test_list_selectors_and_pagination(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    on_w1 = await core.list_pod_for_all_namespaces(field_selector="spec.nodeName=k3s-w1")
    assert on_w1.items and all(p.spec.node_name == "k3s-w1" for p in on_w1.items)
    running = await core.list_pod_for_all_namespaces(
        field_selector="status.phase=Running,metadata.namespace=docfast"
    )
    assert running.items and all(p.metadata.namespace == "docfast" for p in running.items)
    dns = await core.list_namespaced_pod("kube-system", label_selector="k8s-app in (kube-dns)")
    assert len(dns.items) == 3
    with pytest.raises(ApiException) as bad:
        await core.list_pod_for_all_namespaces(field_selector="spec.image=x")
    assert bad.value.status == 400 and "field label not supported" in bad.value.body
    # Pages are read from the live store, so compare only against a pod set that did not change while
    # paging (a pod replaced meanwhile — the lab keeps reconciling — just means: page again).
    for _ in range(5):
        before = sorted(p.metadata.name for p in (await core.list_pod_for_all_namespaces()).items)
        names, token, sizes = [], None, []
        while True:
            page = await core.list_pod_for_all_namespaces(limit=4, _continue=token)
            names += [p.metadata.name for p in page.items]
            sizes.append(len(page.items))
            token = page.metadata._continue
            if not token:
                break
        after = sorted(p.metadata.name for p in (await core.list_pod_for_all_namespaces()).items)
        if before == after:
            break
    assert before == after, "the pods kept changing while paging"
    assert sorted(names) == before
    assert len(sizes) > 1 and all(n == 4 for n in sizes[:-1])


async def test_continue_tokens_are_keys_that_expire(lab: LabState, api: client.ApiClient) -> None:
    """A page continues after the last key it returned (as etcd's range reads do), so an object deleted
    between pages moves nothing; the token is the server's own shape; a compaction expires it (410)."""
    core = client.CoreV1Api(api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="paging")))
    for name in "abcdef":
        await core.create_namespaced_config_map(
            "paging", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"cm-{name}"))
        )
    first = await core.list_namespaced_config_map("paging", limit=2)
    assert [c.metadata.name for c in first.items] == ["cm-a", "cm-b"]
    assert first.metadata.remaining_item_count == 5  # the namespace's kube-root-ca.crt sorts after
    encoded = first.metadata._continue
    token = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    rv = int(first.metadata.resource_version)
    assert token == {"v": "meta.k8s.io/v1", "rv": rv, "start": "paging/cm-b\x00"}
    await core.delete_namespaced_config_map("cm-a", "paging")
    second = await core.list_namespaced_config_map("paging", limit=2, _continue=first.metadata._continue)
    assert [c.metadata.name for c in second.items] == ["cm-c", "cm-d"]
    assert second.metadata.resource_version == first.metadata.resource_version  # the first page's snapshot
    with pytest.raises(ApiException) as bad:
        await core.list_namespaced_config_map("paging", limit=2, _continue="not-a-token")
    assert bad.value.status == 400 and "continue key is not valid" in bad.value.body
    control(lab, "POST", "/fault/kube", {"compact": True})
    with pytest.raises(ApiException) as expired:
        await core.list_namespaced_config_map("paging", limit=2, _continue=second.metadata._continue)
    assert expired.value.status == 410 and json.loads(expired.value.body)["reason"] == "Expired"
    await core.delete_namespace("paging")


async def test_watch_resumes_bookmarks_times_out_and_gets_410(lab: LabState, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    listed = await core.list_namespaced_config_map("default")
    rv = listed.metadata.resource_version
    await core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w1"))
    )
    seen = []
    async with Watch().stream(
        core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=1
    ) as stream:
        async for event in stream:
            seen.append((event["type"], event["object"].metadata.name))
    assert ("ADDED", "w1") in seen  # replayed from the resourceVersion; the stream ended by its timeout
    # Bookmarks carry the latest resourceVersion to clients that ask for them.
    resp = await core.list_namespaced_config_map_without_preload_content(
        "default",
        watch=True,
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=1,
    )
    lines = [json.loads(line) for line in (await resp.read()).decode().splitlines() if line]
    assert {e["type"] for e in lines} >= {"ADDED", "BOOKMARK"}
    # After a compaction, resuming from the old version is 410 Gone, reported in the stream.
    control(lab, "POST", "/fault/kube", {"compact": True})
    resp = await core.list_namespaced_config_map_without_preload_content(
        "default",
        watch=True,
        resource_version=rv,
        timeout_seconds=1,
    )
    events = [json.loads(line) for line in (await resp.read()).decode().splitlines() if line]
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and "too old resource version" in events[0]["object"]["message"]
    await core.delete_namespaced_config_map("w1", "default")


async def test_dropped_watch_streams_end(lab: LabState, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    resp = await core.list_namespaced_config_map_without_preload_content(
        "default", watch=True, timeout_seconds=60
    )

    async def drain() -> bytes:
        return bytes(await resp.read())

    reader = asyncio.ensure_future(drain())
    await asyncio.sleep(0)  # let the stream open before the fault
    control(lab, "POST", "/fault/kube", {"drop_watches": True})
    await asyncio.wait_for(reader, 10)  # ended by the fault, long before its 60 s timeout


async def test_scale_status_and_eviction_subresources(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    policy = client.PolicyV1Api(api)
    scale = await apps.read_namespaced_deployment_scale("docfast", "docfast")
    assert scale.spec.replicas == 2
    await policy.create_namespaced_pod_disruption_budget(
        "docfast",
        client.V1PodDisruptionBudget(
            metadata=client.V1ObjectMeta(name="lab-pdb"),
            spec=client.V1PodDisruptionBudgetSpec(
                min_available=2, selector=client.V1LabelSelector(match_labels={"app": "docfast"})
            ),
        ),
    )
    try:
        pods = await core.list_namespaced_pod("docfast", label_selector="app=docfast")
        victim = pods.items[0].metadata.name
        with pytest.raises(ApiException) as blocked:
            await core.create_namespaced_pod_eviction(
                victim,
                "docfast",
                client.V1Eviction(metadata=client.V1ObjectMeta(name=victim, namespace="docfast")),
            )
        assert blocked.value.status == 429
        assert "disruption budget" in json.loads(blocked.value.body)["message"]
    finally:
        await policy.delete_namespaced_pod_disruption_budget("lab-pdb", "docfast")
    status = await apps.read_namespaced_deployment_status("docfast", "docfast")
    assert status.status.observed_generation == status.metadata.generation


async def test_deployer_gets_a_forbidden_status(lab: LabState) -> None:
    cfg = client.Configuration()
    await config.load_kube_config(
        config_file=lab.files["kubeconfig"], context="deployer", client_configuration=cfg
    )
    async with client.ApiClient(cfg) as api_client:
        core = client.CoreV1Api(api_client)
        assert (await core.list_namespaced_pod("docfast")).items
        with pytest.raises(ApiException) as err:
            await core.list_node()
        body = json.loads(err.value.body)
        assert (
            err.value.status == 403 and body["reason"] == "Forbidden" and body["details"]["kind"] == "nodes"
        )


async def test_bad_token_is_401(lab: LabState) -> None:
    cfg = client.Configuration()
    await config.load_kube_config(
        config_file=lab.files["kubeconfig"], context="admin", client_configuration=cfg
    )
    cfg.api_key = {"authorization": "Bearer wrong"}
    async with client.ApiClient(cfg) as api_client:
        with pytest.raises(ApiException) as err:
            await client.CoreV1Api(api_client).list_namespace()
    assert err.value.status == 401


async def test_the_console_lists_in_pages_and_trims(
    api: client.ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console's watch source reads a kind in pages and stores it without the server's bookkeeping
    (managedFields, the service-account token volume): every pod there, none of that kept."""
    from console.sources import kube as source
    from console.store import ClusterStore

    monkeypatch.setattr(source, "PAGE", 3)
    core = client.CoreV1Api(api)
    pods = await core.list_pod_for_all_namespaces_without_preload_content()
    listed = json.loads(await pods.read())["items"]
    assert any(
        v["name"].startswith(source.TOKEN_VOLUME) for p in listed for v in p["spec"].get("volumes", [])
    )
    store = ClusterStore()
    watch = source.KubeSource(store, api, kinds=(source.Watched("pods", plural="pods"),))
    watch.start()
    try:
        await asyncio.wait_for(watch.synced.wait(), 30)
        assert store.sources["kube:pods"].state.value == "ok"
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # the lab keeps reconciling: the same set once the watch has caught up
            now = {
                (p.metadata.namespace, p.metadata.name)
                for p in (await core.list_pod_for_all_namespaces()).items
            }
            if set(store.objects["pods"]) == now:
                break
            assert asyncio.get_running_loop().time() < deadline, "the store never held the listed pods"
            await asyncio.sleep(0.1)
        for pod in store.items("pods"):
            assert "managedFields" not in pod["metadata"]
            volumes = pod["spec"].get("volumes") or []
            assert not any(v["name"].startswith(source.TOKEN_VOLUME) for v in volumes)
            mounts = [m for c in pod["spec"]["containers"] for m in c.get("volumeMounts") or []]
            assert not any(m["name"].startswith(source.TOKEN_VOLUME) for m in mounts)
    finally:
        await watch.stop()
