"""Release promotion from staging to production, verified and reversible; and ``rollback`` on its own.

Gates (each shown with its result): staging ready on the exact image it would ship for ``release.soak_s``;
production ready and answering through the load balancer; CNPG healthy; a database backup newer than
``release.max_backup_age_h``; the cluster lock (taken by the session — a drill holding it refuses us).

Plan: the image and the configuration differences between the two Deployments' containers.

Apply (route ``image``): production's container image set to staging's exact image by strategic-merge
patch with the resourceVersion precondition; the rollout watched per pod and node while a probe hits
production through the load balancer every 0.5 s; then post-checks (health held for
``release.post_check_s``).  Any failure — rollout not done in ``release.rollout_timeout_s``, a failed
post-check — rolls back to the previous image at once and says so (exit 1).  Everything goes into the
journal (who, when, from, to, result).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from console.clients.borg import BorgError, borg_env
from console.clients.borg_run import borg_run
from console.clients.kube import STRATEGIC_PATCH, KubeError, request, update_fresh
from console.config import Config
from console.events import Check, Event, Finished, Log, Observation, ProbeSample, StepFinished, StepStarted
from console.kubeobj import is_ready, rolled_out
from console.lock import ClusterLock
from console.outages import longest
from console.probes import SteadyProbes
from console.runner import ActionSession


def _deploy_path(ns: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"


def _container(d: dict[str, Any], name: str) -> dict[str, Any]:
    """The named container of a Deployment's or ReplicaSet's template, or of a Pod."""
    spec = d.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or spec).get("containers") or []
    return next((c for c in containers if c["name"] == name), containers[0] if containers else {})


async def _pods(api: Any, ns: str, d: dict[str, Any]) -> list[dict[str, Any]]:
    labels = ",".join(f"{k}={v}" for k, v in (d["spec"]["selector"].get("matchLabels") or {}).items())
    doc = await request(api, "GET", f"/api/v1/namespaces/{ns}/pods", query={"labelSelector": labels})
    return [p for p in doc.get("items", []) if not p["metadata"].get("deletionTimestamp")]


def _config_diff(staging: dict[str, Any], prod: dict[str, Any]) -> list[str]:
    out = []
    if staging.get("image") != prod.get("image"):
        out.append(f"image: {prod.get('image')} -> {staging.get('image')}")
    s_env = {e["name"]: e.get("value", "(from secret)") for e in staging.get("env") or []}
    p_env = {e["name"]: e.get("value", "(from secret)") for e in prod.get("env") or []}
    for k in sorted(set(s_env) | set(p_env)):
        if s_env.get(k) != p_env.get(k):
            out.append(
                f"env {k}: prod {p_env.get(k, '(unset)')} / staging {s_env.get(k, '(unset)')} (not copied)"
            )
    if staging.get("resources") != prod.get("resources"):
        out.append("resources differ (not copied)")
    return out


async def gates(config: Config, api: Any) -> list[Check]:
    r, ns = config.release, config.namespaces
    out = []
    staging = await request(api, "GET", _deploy_path(ns.staging, r.deployment))
    prod = await request(api, "GET", _deploy_path(ns.prod, r.deployment))
    image = _container(staging, r.container).get("image")
    pods = await _pods(api, ns.staging, staging)
    started = [
        datetime.fromisoformat(p["status"]["startTime"].replace("Z", "+00:00")).timestamp()
        for p in pods
        if (p.get("status") or {}).get("startTime")
    ]
    on_image = all(_container(p, r.container).get("image") == image for p in pods)
    soaked = time.time() - max(started) if started else 0.0
    ok = rolled_out(staging) and on_image and bool(started) and soaked >= r.soak_s
    out.append(
        Check(
            "staging-soaked",
            ok,
            True,
            f"{image}: ready for {soaked:.0f} s (need {r.soak_s:g} s)"
            if on_image
            else "staging runs mixed images",
        )
    )
    out.append(
        Check(
            "prod-ready",
            rolled_out(prod),
            True,
            f"{prod['status'].get('readyReplicas', 0)}/{prod['spec'].get('replicas')} ready",
        )
    )
    db = config.database
    cluster = await request(
        api, "GET", f"/apis/postgresql.cnpg.io/v1/namespaces/{db.namespace}/clusters/{db.cluster}"
    )
    st = cluster.get("status") or {}
    healthy = "healthy" in str(st.get("phase", "")).lower() and st.get("readyInstances") == st.get(
        "instances"
    )
    out.append(
        Check(
            "cnpg-healthy",
            healthy,
            True,
            f"{st.get('phase')}, {st.get('readyInstances')}/{st.get('instances')} ready",
        )
    )
    d = config.drill
    lock = ClusterLock(api, d.lock_namespace, d.lock_name, "promote-preflight", "promote")
    try:
        lease = await lock.peek()
        holder = None if lease is None or ClusterLock.expired(lease) else ClusterLock.describe(lease)
    except KubeError as exc:
        holder = f"cannot read the cluster lock: {exc.message}"
    out.append(Check("lock-free", holder is None, True, holder or "no other action holds the cluster lock"))
    repo = next(x for x in config.backups.repositories if x.what == "db")
    try:
        res = await borg_run(
            ["list", "--json", "--last", "1", "--glob-archives=db-*", config.backups.repo_url(repo)],
            borg_env(config.backups, config.ssh),
        )
        archives = res.json().get("archives", [])
        when = datetime.fromisoformat(archives[-1]["start"]).replace(tzinfo=UTC) if archives else None
        age = (datetime.now(UTC) - when).total_seconds() / 3600 if when else None
        out.append(
            Check(
                "backup-fresh",
                age is not None and age <= r.max_backup_age_h,
                True,
                f"newest db backup {age:.1f} h old (max {r.max_backup_age_h:g} h)"
                if age is not None
                else "no db backup",
            )
        )
    except BorgError as exc:
        out.append(Check("backup-fresh", False, True, str(exc)))
    return out


async def _set_image(api: Any, config: Config, image: str) -> None:
    r, ns = config.release, config.namespaces
    container = {"spec": {"template": {"spec": {"containers": [{"name": r.container, "image": image}]}}}}
    await update_fresh(
        api,
        _deploy_path(ns.prod, r.deployment),
        lambda d: (
            "PATCH",
            {"metadata": {"resourceVersion": d["metadata"]["resourceVersion"]}, **container},
            STRATEGIC_PATCH,
        ),
    )


async def _watch_rollout(api: Any, config: Config, emit: Callable[[Event], None], timeout: float) -> bool:
    r, ns = config.release, config.namespaces
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        d = await request(api, "GET", _deploy_path(ns.prod, r.deployment))
        for p in await _pods(api, ns.prod, d):
            ready = is_ready(p)
            tag = _container(p, r.container).get("image", "").rsplit(":", 1)[-1]
            state = f"{tag} on {p['spec'].get('nodeName')}, {'ready' if ready else 'not ready'}"
            if seen.get(p["metadata"]["name"]) != state:
                seen[p["metadata"]["name"]] = state
                emit(Observation(f"pod {p['metadata']['name']}", state))
        if rolled_out(d):
            return True
        await asyncio.sleep(0.5)
    return False


async def run_promote(config: Config, emit: Callable[[Event], None], yes: bool, dry_run: bool) -> int:
    from console.sources.kube import api_client

    r, ns = config.release, config.namespaces
    if r.route != "image":
        emit(
            Finished(
                "REFUSED", 2, "release.route = 'tag' (push a v* tag) is not built yet: use route = 'image'"
            )
        )
        return 2
    api: Any = await api_client(config.kubernetes.kubeconfig or None, config.kubernetes.context)
    try:
        checks = await gates(config, api)
        staging = await request(api, "GET", _deploy_path(ns.staging, r.deployment))
        prod = await request(api, "GET", _deploy_path(ns.prod, r.deployment))
    finally:
        await api.close()
    for c in checks:
        emit(c)
    src, dst = _container(staging, r.container), _container(prod, r.container)
    plan = _config_diff(src, dst)
    for line in plan or ["no difference: production already runs staging's image"]:
        emit(Log("plan", line))
    failed = [c for c in checks if not c.ok]
    if dry_run:
        emit(
            Finished(
                "PLAN",
                3 if failed else 0,
                "dry run: gates and plan only",
                {"plan": plan, "gates": [c.__dict__ for c in checks]},
            )
        )
        return 3 if failed else 0
    if failed:
        emit(
            Finished(
                "REFUSED",
                3,
                "gates refused the promotion: " + "; ".join(f"{c.name}: {c.why}" for c in failed),
            )
        )
        return 3
    if src.get("image") == dst.get("image"):
        emit(Finished("DONE", 0, f"production already runs {dst.get('image')}"))
        return 0
    if not yes:
        emit(Finished("REFUSED", 2, f"promote {src.get('image')} to production: add --yes"))
        return 2
    return await _roll(config, emit, "promote", str(src.get("image")), str(dst.get("image")))


async def _roll(config: Config, emit: Callable[[Event], None], action: str, to: str, previous: str) -> int:
    samples: list[ProbeSample] = []

    def on_sample(x: ProbeSample) -> None:
        samples.append(x)
        emit(x)

    async with ActionSession(config, action, {"from": previous, "to": to}, emit) as s:
        probes = SteadyProbes(
            config,
            None,
            on_sample,
            config.drill.probe_interval_s,
            config.drill.probe_timeout_s,
        )
        probes.start()
        failure = None
        try:
            emit(StepStarted("apply", f"production {previous} -> {to}"))
            s.step("apply", "fault-applied", {"key": "image", "from": previous, "to": to})
            await _set_image(s.api, config, to)
            emit(StepStarted("rollout", "watching the rollout per pod and node"))
            if not await _watch_rollout(s.api, config, emit, config.release.rollout_timeout_s):
                failure = f"the rollout did not finish within {config.release.rollout_timeout_s:g} s"
            else:
                emit(StepFinished("rollout", True, "every pod updated and ready"))
                emit(
                    StepStarted(
                        "post-check",
                        f"production health through the load balancer for {config.release.post_check_s:g} s",
                    )
                )
                start = time.time()
                while time.time() - start < config.release.post_check_s:
                    await asyncio.sleep(0.5)
                bad = [x for x in samples if x.probe == "http-prod" and x.at >= start and not x.ok]
                if bad:
                    failure = f"{len(bad)} failed health checks after the rollout"
                else:
                    emit(StepFinished("post-check", True, "healthy throughout"))
            if failure is not None:
                emit(Log("error", f"{failure}: rolling back to {previous}"))
                await _set_image(s.api, config, previous)
                await _watch_rollout(s.api, config, emit, config.release.rollout_timeout_s)
                s.step("rollback", "rolled-back", {"key": "image", "to": previous})
        finally:
            await probes.stop()
        http_failed = sum(1 for x in samples if x.probe == "http-prod" and not x.ok)
        report = {
            "from": previous,
            "to": to,
            "probes": {
                "http-prod": {
                    "ok": sum(1 for x in samples if x.probe == "http-prod" and x.ok),
                    "failed": http_failed,
                }
            },
            "longest_http_outage_s": longest(samples, "http-prod"),
            "rolled_back": failure is not None,
        }
        s.result = {**report, "result": "rolled back" if failure else "done"}
        if failure is not None:
            emit(
                Finished(
                    "ROLLED-BACK",
                    1,
                    f"{action} of {to} failed ({failure}); production is back on {previous}",
                    report,
                )
            )
            return 1
        emit(
            Finished(
                "DONE",
                0,
                f"production runs {to} (was {previous}); {http_failed} failed health checks",
                report,
            )
        )
        return 0


async def run_rollback(config: Config, emit: Callable[[Event], None], yes: bool, dry_run: bool) -> int:
    """Production back to the image of its previous revision (its ReplicaSet history)."""
    from console.sources.kube import api_client

    r, ns = config.release, config.namespaces
    api: Any = await api_client(config.kubernetes.kubeconfig or None, config.kubernetes.context)
    try:
        prod = await request(api, "GET", _deploy_path(ns.prod, r.deployment))
        rss = await request(api, "GET", f"/apis/apps/v1/namespaces/{ns.prod}/replicasets")
    finally:
        await api.close()
    current = _container(prod, r.container).get("image")
    owned = [
        x
        for x in rss.get("items", [])
        if any(o.get("name") == r.deployment for o in x["metadata"].get("ownerReferences") or [])
    ]
    history = sorted(
        owned,
        key=lambda x: int(
            (x["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0)
        ),
    )
    previous = next(
        (
            _container(x, r.container).get("image")
            for x in reversed(history)
            if _container(x, r.container).get("image") != current
        ),
        None,
    )
    if previous is None:
        emit(Finished("REFUSED", 3, f"no earlier revision than {current} to roll back to"))
        return 3
    emit(Log("plan", f"image: {current} -> {previous}"))
    if dry_run:
        emit(Finished("PLAN", 0, f"dry run: would roll production back to {previous}", {"to": previous}))
        return 0
    if not yes:
        emit(Finished("REFUSED", 2, f"roll production back to {previous}: add --yes"))
        return 2
    return await _roll(config, emit, "rollback", str(previous), str(current))
