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

The opt-in policies (``[[ha.budgets]]``, ``[ha.network_policy]``, patch entries with ``enabled = false``
such as resource limits) take part only once enabled in config: they are objects the console owns whole
(:mod:`console.ha_policy`) — created when missing, their spec replaced when different, deleted again by a
rollback if this run created them, and verified by their own health (a budget's controller status, a
policy that selects pods).  Switched-off items are named in every report as "opt-in, off".
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from console import ha_patch, ha_policy
from console.action import Action, Inspection, NoParams, Outcome, Plan, param
from console.clients.kube import KubeError, delete, request, update_fresh
from console.config import Config, HaPatch
from console.errors import ActionFailed, UsageError, Verdict
from console.events import Diff, Log, PlanItem, StepFinished, StepStarted
from console.ha import drift as patch_drift
from console.ha_policy import OwnedObject
from console.kubeobj import rolled_out
from console.runner import Run

Item = HaPatch | OwnedObject


def items_of(config: Config) -> list[Item]:
    """Every enabled item of the desired HA state: the runtime patches, then the owned policies."""
    return [*(p for p in config.ha.patches if p.enabled), *ha_policy.owned_objects(config)]


def _path(item: Item) -> str:
    return ha_patch.path(item) if isinstance(item, HaPatch) else item.path


def _drift(item: Item, obj: dict[str, Any] | None) -> list[str]:
    return patch_drift(item, obj) if isinstance(item, HaPatch) else ha_policy.drift(item, obj)


def _diff(item: Item, obj: dict[str, Any] | None) -> str:
    return ha_patch.diff(item, obj) if isinstance(item, HaPatch) else ha_policy.diff(item, obj)


async def _get(api: Any, item: Item) -> dict[str, Any] | None:
    try:
        return await request(api, "GET", _path(item))
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


async def plan(config: Config, api: Any) -> list[dict[str, Any]]:
    out = []
    for item in items_of(config):
        obj = await _get(api, item)
        out.append(
            {
                "name": item.name,
                "subject": f"{item.kind} {item.namespace}/{item.object}",
                "drift": _drift(item, obj),
                "diff": _diff(item, obj),
            }
        )
    return out


async def _apply_one(api: Any, item: Item) -> dict[str, Any] | None:
    """Write one object (a 409 re-reads and retries); the object as it was before (None: created)."""
    if isinstance(item, OwnedObject):
        if await _get(api, item) is None:
            await request(api, "POST", item.collection, item.manifest)
            return None
        return await update_fresh(
            api,
            item.path,
            lambda cur: (
                "PUT",
                {
                    **cur,
                    "metadata": {
                        **cur["metadata"],
                        "labels": {**cur["metadata"].get("labels", {}), **ha_policy.MANAGED},
                    },
                    "spec": item.manifest["spec"],
                },
                "application/json",
            ),
        )
    p = item
    try:
        return await update_fresh(
            api,
            ha_patch.path(p),
            lambda obj: ("PATCH", ha_patch.patch_body(p, obj), ha_patch.content_type(p)),
        )
    except KubeError as exc:
        if exc.status == 404:
            raise KubeError(404, "NotFound", f"{p.kind} {p.namespace}/{p.object} not found") from None
        raise


async def _verify_owned(api: Any, item: OwnedObject, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    why = "not verified"
    while time.monotonic() < deadline:
        obj = await _get(api, item)
        problems = ha_policy.drift(item, obj)
        if obj is not None and not problems:
            pods = await request(api, "GET", f"/api/v1/namespaces/{item.namespace}/pods")
            trouble = ha_policy.health(item, obj, pods.get("items", []))
            if trouble is None:
                return None
            why = trouble
        else:
            why = "; ".join(problems)
        await asyncio.sleep(0.5)
    return why


async def _verify(api: Any, config: Config, item: Item, timeout: float) -> str | None:
    """None when the item holds and does its job (a patch: rolled out and spread); else why not."""
    if isinstance(item, OwnedObject):
        return await _verify_owned(api, item, timeout)
    p = item
    deadline = time.monotonic() + timeout
    why = "not verified"
    deploy_path = f"/apis/apps/v1/namespaces/{p.namespace}/deployments/{p.object}"
    while time.monotonic() < deadline:
        obj = await _get(api, p)
        problems = patch_drift(p, obj)
        d = await request(api, "GET", deploy_path)
        if p.kind == "Pooler":
            # The operator carries a Pooler's template into its Deployment a moment later: until the
            # Deployment holds the patch too, its finished rollout is the old one.
            problems += [
                f"Deployment: {x}" for x in patch_drift(p.model_copy(update={"kind": "Deployment"}), d)
            ]
        want = int((d.get("spec") or {}).get("replicas", 1))
        rolled = rolled_out(d)
        labels = ",".join(f"{k}={v}" for k, v in ha_patch.selector(p, obj or {}).items())
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


async def _restore(api: Any, item: Item, before: dict[str, Any] | None) -> None:
    """Put the old spec back (a PUT on the current resourceVersion), or delete what this run created."""
    if before is None:
        await delete(api, _path(item))
        return
    await update_fresh(
        api, _path(item), lambda cur: ("PUT", {**cur, "spec": before["spec"]}, "application/json")
    )


class Ha(Action[NoParams]):
    """``--action ha``: ``--dry-run`` shows the drift (exit 1 when any), ``--yes`` applies and verifies;
    a failed verification puts back everything this run changed (exit 4)."""

    name = "ha"
    title = "Re-apply the HA patches"
    description = (
        "the seed's runtime HA patches: --dry-run shows the drift (exit 1), --yes applies and verifies"
    )
    verify_timeout_s = 180.0

    def __init__(self, config: Config, params: NoParams) -> None:
        super().__init__(config, params)
        self.todo: list[Item] = []
        self.changed: list[tuple[Item, dict[str, Any] | None]] = []

    async def plan(self, run: Run) -> Plan:
        listed = await plan(self.config, await run.kube())
        items: list[PlanItem | Diff] = []
        for row in listed:
            text = f"{row['name']} ({row['subject']}): " + ("; ".join(row["drift"]) or "holds")
            items.append(
                PlanItem(
                    "change" if row["drift"] else "keep",
                    text,
                    row["subject"],
                    level="drift" if row["drift"] else "holds",
                )
            )
            if row["diff"]:
                items.append(Diff(row["subject"], row["diff"]))
        off = ha_policy.opted_out(self.config)
        if off:
            run.emit(Log("info", f"opt-in, off (not checked): {', '.join(off)}"))
        self.todo = [it for it, row in zip(items_of(self.config), listed, strict=True) if row["drift"]]
        drifted = [p.name for p in self.todo]
        report = {"patches": listed, "opt_in_off": off}
        if drifted:
            summary = f"{len(drifted)} of {len(listed)} items drifted: {', '.join(drifted)}"
            return Plan(items, summary, report, Verdict.DRIFT)
        clean = f"all {len(listed)} items hold"
        return Plan(
            items,
            clean,
            report,
            Verdict.CLEAN,
            nothing_to_do=f"{clean}: nothing to apply",
            done_verdict=Verdict.CLEAN,
        )

    async def execute(self, run: Run) -> Outcome:
        api = await run.kube()
        for p in self.todo:
            run.emit(StepStarted("apply", f"{p.name}: {p.kind} {p.namespace}/{p.object}"))
            key = f"ha:{p.name}"  # one key per item: a rollback (or a recovery) undoes them one by one
            run.applied("apply", key, patch=p.name)
            try:
                before = await _apply_one(api, p)
            except KubeError as exc:
                run.step("apply", "rolled-back", {"key": key})  # refused: this one was never written
                run.emit(StepFinished("apply", False, f"{p.name}: {exc.message}"))
                raise ActionFailed(f"{p.name}: {exc.message}") from None
            self.changed.append((p, before))
            run.emit(StepFinished("apply", True, f"{p.name} {'created' if before is None else 'patched'}"))
        names = ", ".join(p.name for p, _ in self.changed)
        return Outcome(Verdict.DONE, f"applied and verified: {names}", self.result())

    async def verify(self, run: Run) -> str | None:
        api = await run.kube()
        for p, _ in self.changed:
            checks = "rollout, spread, patch holds" if isinstance(p, HaPatch) else "holds and takes effect"
            run.emit(StepStarted("verify", f"{p.name}: {checks}"))
            why = await _verify(api, self.config, p, self.verify_timeout_s)
            run.emit(StepFinished("verify", why is None, why or "verified"))
            if why is not None:
                return f"{p.name}: {why}"
        return None

    async def rollback(self, run: Run) -> str:
        api = await run.kube()
        for p, before in reversed(self.changed):
            what = "deleted again (this run created it)" if before is None else "back to its previous spec"
            run.emit(StepStarted("rollback", f"{p.name}: {what}"))
            await _restore(api, p, before)
            run.step("rollback", "rolled-back", {"key": f"ha:{p.name}", "patch": p.name})
            run.emit(StepFinished("rollback", True, f"{p.name} restored"))
        return (
            ", ".join(p.name for p, _ in self.changed) + " restored"
            if self.changed
            else "nothing was changed"
        )

    async def undo(self, run: Run, data: dict[str, Any]) -> str:
        return (
            "ha: nothing to undo (the previous specs were in the killed console's memory; run ha --dry-run)"
        )

    def result(self) -> dict[str, Any]:
        return {"applied": [p.name for p, _ in self.changed]}


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


def _durability(p: Item) -> str:
    if isinstance(p, OwnedObject):
        survives = "yes (created by the console, stored in etcd); lost on reinstall"
        durable = "this manifest (the console's own object: nothing else manages it)"
    elif p.namespace == "kube-system" and p.object == "coredns":
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


@dataclass(frozen=True)
class ExportParams:
    dir: Path | None = param("--dir", "where to write the manifests", required=True)


class HaExport(Inspection[ExportParams]):
    """The desired HA state as plain manifests, a kustomization and ``DURABILITY.md`` (read-only)."""

    name = "ha-export"
    title = "Export HA as code"
    description = "the desired HA state as manifests in --dir"
    Params = ExportParams

    def validate(self) -> None:
        if self.params.dir is None:
            raise UsageError("--action ha-export needs --dir DIR")

    async def execute(self, run: Run) -> Outcome:
        directory = self.params.dir
        assert directory is not None
        api = await run.kube()
        files = []
        directory.mkdir(parents=True, exist_ok=True)
        # Several patch items may own fields of one object (DocFast's failover settings and its resources):
        # each is layered on the same object, which is written once.
        wanted: dict[str, dict[str, Any]] = {}
        for p in items_of(self.config):
            name = f"{p.namespace}-{p.kind.lower()}-{p.object}.yaml"
            if isinstance(p, OwnedObject):
                wanted[name] = p.manifest
                continue
            obj = wanted.get(name) or await _get(api, p)
            if obj is None:
                run.emit(
                    Log("warning", f"{p.name}: {p.kind} {p.namespace}/{p.object} not found, not exported")
                )
                continue
            obj.setdefault("apiVersion", "postgresql.cnpg.io/v1" if p.kind == "Pooler" else "apps/v1")
            obj.setdefault("kind", p.kind)
            wanted[name] = _clean(ha_patch.desired_object(p, obj))
        for name, manifest in wanted.items():
            (directory / name).write_text(yaml.safe_dump(manifest, sort_keys=False))
            files.append(name)
        (directory / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": files,
                },
                sort_keys=False,
            )
        )
        extra = directory / "k3s-server-manifests"
        extra.mkdir(exist_ok=True)
        (extra / "coredns.yaml.skip").write_text("")
        (directory / "DURABILITY.md").write_text(
            DURABILITY.format(rows="\n".join(_durability(p) for p in items_of(self.config)))
        )
        summary = f"{len(files)} manifests, kustomization.yaml and DURABILITY.md in {directory}"
        return Outcome(Verdict.DONE, summary, {"files": files})
