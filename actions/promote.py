"""Release promotion from staging to production, verified and reversible; and ``rollback`` on its own.

Gates (each shown with its result): staging ready on one exact digest (its pods' ``imageID``) for
``release.soak_s``; production ready; CNPG healthy; a database backup newer than
``release.max_backup_age_h``; the cluster lock (taken by the session — a drill holding it refuses us).
Route ``tag`` adds: staging's image names the commit it was built from, the repository answers, and the
new tag is free.

Plan: the image and the configuration differences between the two Deployments' containers
(``console/releases.py``), and what the route will do.

Apply, by ``release.route``:

* ``image`` — production's container set to ``repo:tag@sha256:<staging's digest>``: what ships is the
  content that soaked, even if the tag moves.  Strategic-merge patch with the resourceVersion precondition.
* ``tag`` — the seed's pipeline: the next ``v*`` tag (or ``--tag``) made on staging's commit and pushed;
  then production is followed until ``promote.yml`` sets its image (``release.pipeline_timeout_s``).  A
  build whose digest differs from the soaked one is reported (the pipeline rebuilt; it was not soaked).

Then the rollout is watched per pod and node while a probe hits production through the load balancer every
0.5 s, and post-checks hold for ``release.post_check_s`` (errors: failed health checks plus restarts of
the new pods, at most ``release.max_post_check_errors``).  Any failure rolls production back to its
previous image at once and says so (exit 1); a pushed tag stays in git (tags are history — the summary says
so).  Everything goes into the journal (who, when, from, to, result).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from console.clients.borg import BorgError, borg_env
from console.clients.borg_run import borg_run
from console.clients.git import GitError, git_env, next_version, push_tag, remote_tags
from console.clients.kube import STRATEGIC_PATCH, KubeError, request, update_fresh
from console.config import Config
from console.events import Check, Event, Finished, Log, Observation, ProbeSample, StepFinished, StepStarted
from console.journal import operator
from console.kubeobj import is_ready, rolled_out
from console.lock import ClusterLock
from console.outages import longest
from console.probes import SteadyProbes
from console.releases import config_diff, container, digest, history, tag, without_digest
from console.runner import ActionSession


@dataclass(frozen=True)
class Build:
    """What staging runs: its spec's image and the one digest all its pods run."""

    image: str
    digest: str  # "sha256:…"; empty when the pods disagree or report none
    container: dict[str, Any] = field(default_factory=dict, compare=False)  # staging's, for the plan

    @property
    def pinned(self) -> str:
        return f"{without_digest(self.image)}@{self.digest}"


def _deploy_path(ns: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"


async def _pods(api: Any, ns: str, d: dict[str, Any]) -> list[dict[str, Any]]:
    labels = ",".join(f"{k}={v}" for k, v in (d["spec"]["selector"].get("matchLabels") or {}).items())
    doc = await request(api, "GET", f"/api/v1/namespaces/{ns}/pods", query={"labelSelector": labels})
    return [p for p in doc.get("items", []) if not p["metadata"].get("deletionTimestamp")]


async def gates(config: Config, api: Any) -> tuple[list[Check], Build]:
    r, ns = config.release, config.namespaces
    out = []
    staging = await request(api, "GET", _deploy_path(ns.staging, r.deployment))
    prod = await request(api, "GET", _deploy_path(ns.prod, r.deployment))
    image = str(container(staging, r.container).get("image", ""))
    pods = await _pods(api, ns.staging, staging)
    started = [
        datetime.fromisoformat(p["status"]["startTime"].replace("Z", "+00:00")).timestamp()
        for p in pods
        if (p.get("status") or {}).get("startTime")
    ]
    on_image = all(container(p, r.container).get("image") == image for p in pods)
    digests = {digest(p, r.container) for p in pods}
    build = Build(image, next(iter(digests)) if len(digests) == 1 else "", container(staging, r.container))
    soaked = time.time() - max(started) if started else 0.0
    ok = rolled_out(staging) and on_image and bool(build.digest) and bool(started) and soaked >= r.soak_s
    if not on_image or len(digests) > 1:
        why = f"staging runs mixed images ({len(digests)} digests): wait for its rollout"
    elif not build.digest:
        why = f"{tag(image)}: the kubelet reports no digest (imageID) yet"
    else:
        why = f"{tag(image)} @ {build.digest[:19]}: ready for {soaked:.0f} s (need {r.soak_s:g} s)"
    out.append(Check("staging-soaked", ok, True, why))
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
    return out, build


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
            running = tag(str(container(p, r.container).get("image", "")))
            state = f"{running} on {p['spec'].get('nodeName')}, {'ready' if ready else 'not ready'}"
            if seen.get(p["metadata"]["name"]) != state:
                seen[p["metadata"]["name"]] = state
                emit(Observation(f"pod {p['metadata']['name']}", state))
        if rolled_out(d):
            return True
        await asyncio.sleep(0.5)
    return False


@dataclass
class _TagPlan:
    """Route ``tag``: the commit staging was built from and the tag that will ship it."""

    commit: str
    tag: str


async def _tag_gates(config: Config, build: Build, wanted: str | None) -> tuple[list[Check], _TagPlan | None]:
    r = config.release
    out = []
    m = re.search(r.staging_commit_pattern, tag(build.image))
    if m is None or "commit" not in m.groupdict():
        why = f"staging runs {tag(build.image)}, not a build of a {r.branch} commit"
        why += f" (release.staging_commit_pattern {r.staging_commit_pattern})"
        return [Check("staging-commit", False, True, why)], None
    commit = m.group("commit")
    out.append(Check("staging-commit", True, True, f"staging runs {tag(build.image)}: commit {commit}"))
    try:
        tags = await remote_tags(r.git_repository, git_env(config.ssh))
    except GitError as exc:
        return [*out, Check("git-reachable", False, True, f"{r.git_repository}: {exc}")], None
    out.append(Check("git-reachable", True, True, f"{r.git_repository}: {len(tags)} tags"))
    name = wanted or next_version(list(tags), r.tag_pattern)
    if name is None:
        out.append(Check("tag-free", False, True, "no v* tag to count from: name the release with --tag"))
        return out, None
    if not re.search(r.tag_pattern, name):
        out.append(Check("tag-free", False, True, f"{name} does not match release.tag_pattern"))
        return out, None
    if name in tags:
        out.append(Check("tag-free", False, True, f"{name} exists already (at {tags[name][:7]})"))
        return out, None
    out.append(Check("tag-free", True, True, f"{name} is free"))
    return out, _TagPlan(commit, name)


async def run_promote(
    config: Config, emit: Callable[[Event], None], yes: bool, dry_run: bool, tag_name: str | None = None
) -> int:
    from console.sources.kube import api_client

    r, ns = config.release, config.namespaces
    if tag_name and r.route != "tag":
        emit(Finished("REFUSED", 2, "--tag is for release.route = 'tag'"))
        return 2
    api: Any = await api_client(config.kubernetes.kubeconfig or None, config.kubernetes.context)
    try:
        checks, build = await gates(config, api)
        prod = await request(api, "GET", _deploy_path(ns.prod, r.deployment))
        running = {digest(p, r.container) for p in await _pods(api, ns.prod, prod)}
    finally:
        await api.close()
    tag_plan = None
    if r.route == "tag":
        more, tag_plan = await _tag_gates(config, build, tag_name)
        checks += more
    for c in checks:
        emit(c)
    dst = container(prod, r.container)
    previous = str(dst.get("image", ""))
    plan = config_diff(build.container, dst)
    if tag_plan is not None:
        to = f"{without_digest(build.image).rsplit(':', 1)[0]}:{tag_plan.tag}"
        plan.append(
            f"route tag: tag {tag_plan.tag} at {tag_plan.commit} (staging's build {tag(build.image)}), "
            f"push it to {r.git_repository}; promote.yml builds and deploys it"
        )
    else:
        to = build.pinned if build.digest else build.image
        plan.append(f"route image: production set to {to}")
    for line in plan:
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
    if build.digest and running == {build.digest}:
        emit(Finished("DONE", 0, f"production already runs staging's build ({build.digest[:19]})"))
        return 0
    if not yes:
        emit(Finished("REFUSED", 2, f"promote {to} to production: add --yes"))
        return 2
    if tag_plan is None:

        async def apply_image(s: ActionSession) -> None:
            await _set_image(s.api, config, to)

        return await _roll(config, emit, "promote", to, previous, apply_image, build.digest)
    planned = tag_plan

    async def apply_tag(s: ActionSession) -> None:
        emit(StepStarted("tag", f"tag {planned.tag} at {planned.commit} and push to {r.git_repository}"))
        full = await push_tag(
            r.git_repository,
            r.branch,
            planned.commit,
            planned.tag,
            f"Release {planned.tag} (promoted from staging's {tag(build.image)} by opsconsole)",
            operator(),
            git_env(config.ssh),
        )
        s.step("tag", "done", {"tag": planned.tag, "commit": full})
        emit(StepFinished("tag", True, f"{planned.tag} pushed ({full[:12]})"))
        emit(StepStarted("pipeline", f"waiting for promote.yml to set production to {planned.tag}"))
        deadline = time.monotonic() + r.pipeline_timeout_s
        while True:
            d = await request(s.api, "GET", _deploy_path(ns.prod, r.deployment))
            if tag(str(container(d, r.container).get("image", ""))) == planned.tag:
                emit(StepFinished("pipeline", True, f"production's image is {planned.tag}"))
                return
            if time.monotonic() > deadline:
                raise _Failed(f"the pipeline did not deploy {planned.tag} within {r.pipeline_timeout_s:g} s")
            await asyncio.sleep(1.0)

    return await _roll(config, emit, "promote", to, previous, apply_tag, build.digest, tag_plan.tag)


class _Failed(Exception):
    """A promotion step that failed in a way that rolls back (not a crash)."""


async def _restarts(api: Any, config: Config) -> int:
    r, ns = config.release, config.namespaces
    d = await request(api, "GET", _deploy_path(ns.prod, r.deployment))
    return sum(
        int(cs.get("restartCount", 0))
        for p in await _pods(api, ns.prod, d)
        for cs in (p.get("status") or {}).get("containerStatuses") or []
    )


async def _prod_digests(api: Any, config: Config) -> set[str]:
    r, ns = config.release, config.namespaces
    d = await request(api, "GET", _deploy_path(ns.prod, r.deployment))
    return {digest(p, r.container) for p in await _pods(api, ns.prod, d)}


async def _roll(
    config: Config,
    emit: Callable[[Event], None],
    action: str,
    to: str,
    previous: str,
    apply: Callable[[ActionSession], Awaitable[None]],
    soaked_digest: str = "",
    pushed_tag: str = "",
) -> int:
    samples: list[ProbeSample] = []
    rel = config.release

    def on_sample(x: ProbeSample) -> None:
        samples.append(x)
        emit(x)

    params = {"from": previous, "to": to, **({"tag": pushed_tag} if pushed_tag else {})}
    async with ActionSession(config, action, params, emit) as s:
        probes = SteadyProbes(
            config,
            None,
            on_sample,
            config.drill.probe_interval_s,
            config.drill.probe_timeout_s,
        )
        probes.start()
        failure = None
        errors = 0
        digest_note = ""
        try:
            emit(StepStarted("apply", f"production {previous} -> {to}"))
            s.step("apply", "fault-applied", {"key": "image", "from": previous, "to": to})
            try:
                await apply(s)
            except (_Failed, GitError) as exc:
                failure = str(exc)
            if failure is None and not await _watch_rollout(s.api, config, emit, rel.rollout_timeout_s):
                failure = f"the rollout did not finish within {rel.rollout_timeout_s:g} s"
            if failure is None:
                emit(StepFinished("rollout", True, "every pod updated and ready"))
                running = await _prod_digests(s.api, config)
                if soaked_digest and running != {soaked_digest}:
                    digest_note = (
                        f"production runs {', '.join(sorted(d[:19] for d in running))}, not the digest that "
                        f"soaked in staging ({soaked_digest[:19]}): the pipeline rebuilt it"
                    )
                    emit(Log("warning", digest_note))
                emit(
                    StepStarted(
                        "post-check",
                        f"production health through the load balancer for {rel.post_check_s:g} s",
                    )
                )
                start, restarts0 = time.time(), await _restarts(s.api, config)
                while time.time() - start < rel.post_check_s:
                    await asyncio.sleep(0.5)
                bad = [x for x in samples if x.probe == "http-prod" and x.at >= start and not x.ok]
                restarted = max(0, await _restarts(s.api, config) - restarts0)
                errors = len(bad) + restarted
                if errors > rel.max_post_check_errors:
                    failure = (
                        f"{len(bad)} failed health checks and {restarted} container restarts after the "
                        f"rollout (at most {rel.max_post_check_errors} errors allowed)"
                    )
                else:
                    emit(StepFinished("post-check", True, f"healthy throughout ({errors} errors)"))
            if failure is not None:
                emit(Log("error", f"{failure}: rolling back to {previous}"))
                await _set_image(s.api, config, previous)
                await _watch_rollout(s.api, config, emit, rel.rollout_timeout_s)
                s.step("rollback", "rolled-back", {"key": "image", "to": previous})
        finally:
            await probes.stop()
        http_failed = sum(1 for x in samples if x.probe == "http-prod" and not x.ok)
        report = {
            "from": previous,
            "to": to,
            **({"tag": pushed_tag} if pushed_tag else {}),
            "probes": {
                "http-prod": {
                    "ok": sum(1 for x in samples if x.probe == "http-prod" and x.ok),
                    "failed": http_failed,
                }
            },
            "post_check_errors": errors,
            "digest_matches_soaked": not digest_note if soaked_digest else None,
            "longest_http_outage_s": longest(samples, "http-prod"),
            "rolled_back": failure is not None,
        }
        s.result = {**report, "result": "rolled back" if failure else "done"}
        if failure is not None:
            kept = f"; the tag {pushed_tag} stays in git" if pushed_tag else ""
            emit(
                Finished(
                    "ROLLED-BACK",
                    1,
                    f"{action} of {to} failed ({failure}); production is back on {previous}{kept}",
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
    current = str(container(prod, r.container).get("image", ""))
    previous = next(
        (h.image for h in history(rss.get("items", []), r.deployment, r.container) if h.image != current),
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
    target = previous

    async def apply_image(s: ActionSession) -> None:
        await _set_image(s.api, config, target)

    return await _roll(config, emit, "rollback", target, current, apply_image)
