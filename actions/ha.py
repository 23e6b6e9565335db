"""``--action ha``: the seed's runtime HA patches — find the drift, re-apply it safely, write it down as code.

* **Dry run** (``--dry-run``): per ``[[ha.patches]]`` entry, whether it holds (:func:`console.ha.drift`, the
  dashboard's own judgement) and a unified diff of the owned fields; exit 1 when anything drifted.
* **Apply** (``--yes``): under the cluster lock and journaled, each drifting object is patched
  (:mod:`console.ha_patch`: the right content type, a resourceVersion precondition, a re-read and retry on
  409), then verified — the rollout completes, the pods are spread over distinct nodes where there are
  enough, the patch holds on a fresh read.  If verification fails, every object this run changed is put
  back as it was (a PUT of the old spec on the current resourceVersion) and the action exits 1.
* **Export** (``ha-export --dir DIR``): plain manifests with the desired state, a kustomization, and
  ``DURABILITY.md`` saying what survives a K3s restart and the durable form of each item.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from console.clients.kube import KubeError, request, update_fresh
from console.config import Config, HaPatch
from console.events import Event, Finished, Log, StepFinished, StepStarted
from console.ha import drift
from console.ha_patch import content_type, desired_object, diff, patch_body, path, selector
from console.runner import ActionSession, Refused


async def _get(api: Any, patch: HaPatch) -> dict[str, Any] | None:
    try:
        return await request(api, "GET", path(patch))
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


async def plan(config: Config, api: Any) -> list[dict[str, Any]]:
    out = []
    for p in config.ha.patches:
        obj = await _get(api, p)
        out.append(
            {
                "name": p.name,
                "subject": f"{p.kind} {p.namespace}/{p.object}",
                "drift": drift(p, obj),
                "diff": diff(p, obj),
            }
        )
    return out


async def run_dry_run(config: Config, emit: Callable[[Event], None]) -> int:
    from console.sources.kube import api_client

    api: Any = await api_client(config.kubernetes.kubeconfig or None, config.kubernetes.context)
    try:
        items = await plan(config, api)
    finally:
        await api.close()
    for item in items:
        emit(
            Log(
                "drift" if item["drift"] else "holds",
                f"{item['name']} ({item['subject']}): " + ("; ".join(item["drift"]) or "holds"),
            )
        )
        if item["diff"]:
            emit(Log("diff", item["diff"]))
    drifted = [i["name"] for i in items if i["drift"]]
    emit(
        Finished(
            "DRIFT" if drifted else "CLEAN",
            1 if drifted else 0,
            f"{len(drifted)} of {len(items)} patches drifted: {', '.join(drifted)}"
            if drifted
            else f"all {len(items)} patches hold",
            {"patches": items},
        )
    )
    return 1 if drifted else 0


async def _apply_one(api: Any, p: HaPatch, emit: Callable[[Event], None]) -> dict[str, Any]:
    """Patch one object (a 409 re-reads and retries); the object as it was before."""
    try:
        return await update_fresh(api, path(p), lambda obj: ("PATCH", patch_body(p, obj), content_type(p)))
    except KubeError as exc:
        if exc.status == 404:
            raise RuntimeError(f"{p.kind} {p.namespace}/{p.object} not found") from None
        raise


async def _verify(api: Any, config: Config, p: HaPatch, timeout: float) -> str | None:
    """None when the patch holds and its pods rolled out and spread; else why not."""
    deadline = time.monotonic() + timeout
    why = "not verified"
    deploy_path = f"/apis/apps/v1/namespaces/{p.namespace}/deployments/{p.object}"
    while time.monotonic() < deadline:
        obj = await _get(api, p)
        problems = drift(p, obj)
        d = await request(api, "GET", deploy_path)
        st, want = d.get("status") or {}, int((d.get("spec") or {}).get("replicas", 1))
        rolled = (
            int(st.get("observedGeneration", 0)) >= int(d["metadata"].get("generation", 0))
            and int(st.get("updatedReplicas", 0)) == want
            and int(st.get("readyReplicas", 0)) == want
            and int(st.get("replicas", 0)) == want
        )
        labels = ",".join(f"{k}={v}" for k, v in selector(p, obj or {}).items())
        pods = await request(
            api, "GET", f"/api/v1/namespaces/{p.namespace}/pods", query={"labelSelector": labels}
        )
        nodes_all = await request(api, "GET", "/api/v1/nodes")
        schedulable = sum(
            1 for n in nodes_all.get("items", []) if not (n.get("spec") or {}).get("unschedulable")
        )
        placed = [
            (pod.get("spec") or {}).get("nodeName")
            for pod in pods.get("items", [])
            if not pod["metadata"].get("deletionTimestamp")
        ]
        spread_ok = len(set(placed)) >= min(want, schedulable - (1 if p.topology_spread else 0), len(placed))
        if not problems and rolled and spread_ok:
            return None
        why = "; ".join(problems) or ("rollout not complete" if not rolled else f"pods not spread: {placed}")
        await asyncio.sleep(0.5)
    return why


async def _restore(api: Any, p: HaPatch, before: dict[str, Any]) -> None:
    """Put the old spec back (a PUT on the current resourceVersion)."""
    await update_fresh(api, path(p), lambda cur: ("PUT", {**cur, "spec": before["spec"]}, "application/json"))


async def run_apply(config: Config, emit: Callable[[Event], None], verify_timeout: float = 180.0) -> int:
    async with ActionSession(config, "ha", {}, emit) as s:
        items = await plan(config, s.api)
        todo = [p for p, item in zip(config.ha.patches, items, strict=True) if item["drift"]]
        if not todo:
            emit(Finished("CLEAN", 0, f"all {len(items)} patches hold: nothing to apply", {"patches": items}))
            return 0
        changed: list[tuple[HaPatch, dict[str, Any]]] = []
        failure = None
        try:
            for p in todo:
                emit(StepStarted("apply", f"{p.name}: {p.kind} {p.namespace}/{p.object}"))
                try:
                    before = await _apply_one(s.api, p, emit)
                except KubeError as exc:
                    failure = f"{p.name}: {exc.message}"
                    emit(StepFinished("apply", False, failure))
                    break
                changed.append((p, before))
                s.step("apply", "fault-applied", {"key": "ha", "patch": p.name})
                emit(StepFinished("apply", True, f"{p.name} patched"))
            if failure is None:
                for p, _ in changed:
                    emit(StepStarted("verify", f"{p.name}: rollout, spread, patch holds"))
                    why = await _verify(s.api, config, p, verify_timeout)
                    emit(StepFinished("verify", why is None, why or "verified"))
                    if why is not None:
                        failure = f"{p.name}: {why}"
                        break
        except KubeError as exc:
            failure = exc.message
        if failure is not None:
            for p, before in reversed(changed):
                emit(StepStarted("rollback", f"{p.name}: back to its previous spec"))
                await _restore(s.api, p, before)
                s.step("rollback", "rolled-back", {"key": "ha", "patch": p.name})
                emit(StepFinished("rollback", True, f"{p.name} restored"))
            s.result = {"failed": failure}
            emit(
                Finished(
                    "FAIL",
                    1,
                    f"HA apply failed and was rolled back: {failure}",
                    {"applied": [p.name for p, _ in changed]},
                )
            )
            return 1
        s.result = {"applied": [p.name for p, _ in changed]}
        emit(
            Finished(
                "DONE",
                0,
                f"applied and verified: {', '.join(p.name for p, _ in changed)}",
                {"applied": [p.name for p, _ in changed]},
            )
        )
        return 0


DURABILITY = """# What survives a K3s restart — and the durable form of each HA item

K3s re-applies the manifests in `/var/lib/rancher/k3s/server/manifests/` (its packaged add-ons: CoreDNS,
Traefik, local-path-provisioner, metrics-server) every time the server starts, overwriting runtime
patches to those objects.  Objects you created yourself (Deployments, Poolers, PDBs) are stored in etcd and
survive restarts and upgrades unchanged; they are lost only with the cluster (reinstall, disaster).

| Item | Survives a K3s restart as a runtime patch? | Durable form (emitted here) |
|------|--------------------------------------------|-----------------------------|
{rows}

Apply this directory with `kubectl apply -k .` after a reinstall (or keep it in git and let CD apply it).
For CoreDNS, also place `k3s-server-manifests/coredns.yaml.skip` in the server's manifests directory (K3s
then leaves its packaged `coredns.yaml` alone) and keep `kube-system-deployment-coredns.yaml` applied.
"""


def _durability(p: HaPatch) -> str:
    if p.namespace == "kube-system" and p.object == "coredns":
        survives = "**no** — K3s re-applies its packaged CoreDNS on start"
        durable = "this manifest + `coredns.yaml.skip` in the server manifests dir"
    elif p.kind == "Pooler":
        survives = "yes (a custom resource in etcd); lost on reinstall"
        durable = "the Pooler manifest (CNPG rebuilds its Deployment from it)"
    elif p.namespace == "cnpg-system":
        survives = "yes, until the operator is re-installed or upgraded from its stock manifest"
        durable = "this manifest, or the Helm values `replicaCount` / `topologySpreadConstraints`"
    else:
        survives = "yes (in etcd); lost on reinstall, reset by a CD deploy of a stock manifest"
        durable = "this manifest, kept with the app's own manifests"
    return f"| {p.name} | {survives} | {durable} |"


def _clean(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {
        k: v
        for k, v in obj.get("metadata", {}).items()
        if k in ("name", "namespace", "labels", "annotations")
    }
    meta.get("annotations", {}).pop("deployment.kubernetes.io/revision", None)
    if not meta.get("annotations"):
        meta.pop("annotations", None)
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": meta,
        "spec": obj.get("spec"),
    }


async def run_export(config: Config, emit: Callable[[Event], None], directory: Path) -> int:
    from console.sources.kube import api_client

    api: Any = await api_client(config.kubernetes.kubeconfig or None, config.kubernetes.context)
    files = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for p in config.ha.patches:
            obj = await _get(api, p)
            if obj is None:
                emit(Log("warning", f"{p.name}: {p.kind} {p.namespace}/{p.object} not found, not exported"))
                continue
            obj.setdefault("apiVersion", "postgresql.cnpg.io/v1" if p.kind == "Pooler" else "apps/v1")
            obj.setdefault("kind", p.kind)
            name = f"{p.namespace}-{p.kind.lower()}-{p.object}.yaml"
            (directory / name).write_text(yaml.safe_dump(_clean(desired_object(p, obj)), sort_keys=False))
            files.append(name)
    finally:
        await api.close()
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": files},
            sort_keys=False,
        )
    )
    extra = directory / "k3s-server-manifests"
    extra.mkdir(exist_ok=True)
    (extra / "coredns.yaml.skip").write_text("")
    (directory / "DURABILITY.md").write_text(
        DURABILITY.format(rows="\n".join(_durability(p) for p in config.ha.patches))
    )
    emit(
        Finished(
            "DONE",
            0,
            f"{len(files)} manifests, kustomization.yaml and DURABILITY.md in {directory}",
            {"files": files},
        )
    )
    return 0


__all__ = ["Refused", "run_apply", "run_dry_run", "run_export"]
