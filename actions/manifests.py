"""The workloads stage of ``provision``: the configured manifest directories into a fresh cluster (#9).

Each directory in ``[provision] manifests`` is one stage: its missing objects are created (existing ones
are kept — see ``console/manifests.py`` for why provisioning never changes what runs), then the stage's
workloads are waited for — Deployments rolled out, DaemonSets ready, a CNPG ``Cluster`` healthy with every
instance ready, a ``Pooler``'s Deployment rolled out — before the next directory starts.  So the CNPG
operator answers before the ``Cluster`` reaches it, and DocFast starts against a database that takes
connections.

It runs as an action of its own (journal entry ``manifests``, the cluster lock held) after the Hetzner and
K3s part of ``provision`` has finished its own entry.  Nothing is rolled back on failure: what was created
is what the files say, and running ``provision`` again creates only what is still missing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from console.action import Action, NoParams, Outcome
from console.clients.kube import KubeError, request
from console.config import Config
from console.errors import ActionFailed, Verdict
from console.events import Log, StepFinished, StepStarted
from console.kubeobj import unsettled
from console.manifests import Discovery, Manifest, ManifestError, load
from console.runner import Run


def _stage_name(directory: Path) -> str:
    return directory.name or str(directory)


async def plan_rows(config: Config, api: Any | None) -> list[dict[str, str]]:
    """One plan row per object: ``keep`` when it exists, else ``create``; without an API (no cluster yet)
    every object is ``create``.  Raises :class:`ManifestError` for unreadable files."""
    rows = []
    disc = Discovery(api) if api is not None else None
    for directory, found in load(config.provision.manifest_dirs()):
        for m in found:
            live = await disc.get(m) if disc is not None else None
            op = "keep" if live is not None else "create"
            detail = f"{_stage_name(directory)}/{m.source}" + (
                " (exists; provision does not change it)" if live is not None else ""
            )
            rows.append({"kind": "manifest", "name": m.label, "op": op, "detail": detail})
    return rows


async def _waiting(disc: Discovery, api: Any, created: list[Manifest]) -> list[str]:
    """What in this stage is not up yet, each with why."""
    out = []
    for m in created:
        live = await disc.get(m)
        if live is None:
            out.append(f"{m.label}: gone")
            continue
        why = unsettled(live)
        if why is None and m.kind == "Pooler" and m.api_version.startswith("postgresql.cnpg.io/"):
            # CNPG serves a Pooler through a Deployment of the same name.
            try:
                dep = await request(
                    api, "GET", f"/apis/apps/v1/namespaces/{m.namespace}/deployments/{m.name}"
                )
                why = unsettled(dep)
            except KubeError as exc:
                why = "its Deployment is not created yet" if exc.status == 404 else exc.message
        if why is not None:
            out.append(f"{m.label}: {why}")
    return out


class ApplyManifests(Action[NoParams]):
    """The workloads stage of ``provision`` (run by it as an action of its own; not a ``--action``)."""

    name = "manifests"
    title = "Apply the workload manifests"
    description = "the configured manifest directories into the cluster, stage by stage"

    def __init__(self, config: Config, params: NoParams) -> None:
        super().__init__(config, params)
        self.stages: list[tuple[Path, list[Manifest]]] = []
        self.timings: dict[str, float] = {}
        self.counts = {"created": 0, "kept": 0}

    def journal_params(self) -> dict[str, Any]:
        return {"stages": [str(d) for d, _ in self.stages]}

    def validate(self) -> None:
        self.stages = load(self.config.provision.manifest_dirs())  # ManifestError: a usage error, exit 2

    async def execute(self, run: Run) -> Outcome:
        api = await run.kube()
        disc = Discovery(api)
        for directory, found in self.stages:
            stage = _stage_name(directory)
            run.emit(StepStarted(stage, f"{len(found)} objects from {directory}"))
            t0 = time.monotonic()
            try:
                for m in found:
                    made = await disc.create(m)
                    self.counts["created" if made else "kept"] += 1
                    run.emit(Log("create" if made else "keep", m.label))
                    if made:
                        run.step(stage, "created", {"object": m.label})
                deadline = time.monotonic() + self.config.provision.workloads_timeout_s
                pending = await _waiting(disc, api, found)
                while pending and time.monotonic() < deadline:
                    await asyncio.sleep(1.0)
                    pending = await _waiting(disc, api, found)
            except (KubeError, ManifestError) as exc:
                why = exc.message if isinstance(exc, KubeError) else str(exc)
                run.emit(StepFinished(stage, False, why))
                raise ActionFailed(f"{stage}: {why}") from None
            self.timings[stage] = round(time.monotonic() - t0, 2)
            if pending:
                why = (
                    f"not up after {self.config.provision.workloads_timeout_s:g} s: {'; '.join(pending[:4])}"
                )
                run.emit(StepFinished(stage, False, why))
                raise ActionFailed(f"{stage}: {why}")
            run.emit(StepFinished(stage, True, f"up in {self.timings[stage]:.1f} s"))
        c = self.counts
        return Outcome(
            Verdict.DONE,
            f"{c['created']} objects created, {c['kept']} kept, every workload up",
            self.result(),
        )

    def result(self) -> dict[str, Any]:
        return {"timings": self.timings, **self.counts}
