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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from console.action import Action, Outcome, Plan, param
from console.clients.borg import BorgError, borg_env
from console.clients.borg_run import borg_run
from console.clients.git import GitError, git_env, next_version, push_tag, remote_tags
from console.clients.kube import STRATEGIC_PATCH, KubeError, request, update_fresh
from console.config import Config
from console.errors import ActionFailed, Refused, UsageError, Verdict
from console.events import Check, Event, Log, Observation, PlanItem, ProbeSample, StepFinished, StepStarted
from console.journal import operator
from console.kubeobj import is_ready, rolled_out
from console.outages import longest
from console.probes import SteadyProbes
from console.releases import config_diff, container, digest, history, tag, without_digest
from console.report import Facts, Report, Section
from console.runner import Run


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
    out.append(await _slo_gate(config, api))
    return out, build


async def _slo_gate(config: Config, api: Any) -> Check:
    """The month's outage budget (console/slo_ledger.py): spent, a promotion waits — a release is the
    likeliest next outage.  Not critical: ``--force`` promotes anyway (a fix for the outage itself)."""
    from console import slo_ledger

    try:
        spend = await slo_ledger.read(api, config.drill.lock_namespace, config.slo.monthly_budget_s)
    except KubeError as exc:
        return Check("slo-budget", False, False, f"the SLO ledger cannot be read: {exc.sentence()}")
    if spend is None:
        return Check("slo-budget", True, False, "no SLO ledger yet (no watcher or drill has written one)")
    return Check("slo-budget", spend.remaining_s > 0, False, spend.sentence())


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


@dataclass(frozen=True)
class PromoteParams:
    tag: str | None = param(
        "--tag", "with release.route = 'tag': the v* tag to push (default: next patch)", tui=True
    )
    force: bool = param("--force", "promote although the month's SLO budget is spent (logged)", False)


@dataclass(frozen=True)
class PromoteReport(Report):
    """A promotion's or a rollback's outcome (the journal keeps who, when, from, to)."""

    kind = "promote"
    from_: str = field(metadata={"json": "from"})
    to: str
    tag: str = field(default="", metadata={"omit_empty": True})
    probes: dict[str, Any] = field(default_factory=dict)
    post_check_errors: int = 0
    digest_matches_soaked: bool | None = None
    longest_http_outage_s: float = 0.0
    rolled_back: bool = False

    def sections(self, full: bool) -> list[Section]:
        http = self.probes.get("http-prod", {})
        facts = [
            ("from", self.from_),
            ("to", self.to),
            ("health checks", f"{http.get('ok', 0)} ok, {http.get('failed', 0)} failed"),
            ("longest outage", f"{self.longest_http_outage_s:g} s"),
            ("post-check errors", str(self.post_check_errors)),
        ]
        if self.tag:
            facts.insert(2, ("tag", self.tag))
        if self.digest_matches_soaked is False:
            facts.append(("digest", "NOT the one that soaked in staging"))
        return [Facts("", facts)]


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


class _Roll(Action[Any]):
    """What a promotion and a rollback share: production's image changed, the rollout watched per pod, a
    probe through the load balancer every 0.5 s, post-checks; a failure puts the previous image back."""

    soaked_digest = ""
    pushed_tag = ""

    def __init__(self, config: Config, params: Any) -> None:
        super().__init__(config, params)
        self.previous = ""
        self.to = ""
        self.samples: list[ProbeSample] = []
        self.errors = 0
        self.digest_note = ""
        self.rolled_back = False
        self.probes: SteadyProbes | None = None

    def journal_params(self) -> dict[str, Any]:
        tag = self.journal_tag()
        return {"from": self.previous, "to": self.to, **({"tag": tag} if tag else {})}

    def journal_tag(self) -> str:
        """The tag this run will push (the journal says so from the start); "" for none."""
        return ""

    def changing(self, run: Run) -> None:
        """Journal production's image change, just before it happens (what a rollback undoes)."""
        run.applied("apply", "image", **{"from": self.previous, "to": self.to})

    async def apply(self, run: Run) -> None:
        raise NotImplementedError

    def _on_sample(self, run: Run) -> Any:
        def on(x: ProbeSample) -> None:
            self.samples.append(x)
            run.emit(x)

        return on

    async def execute(self, run: Run) -> Outcome:
        config, emit, rel = self.config, run.emit, self.config.release
        api = await run.kube()
        d = config.drill
        self.probes = SteadyProbes(config, None, self._on_sample(run), d.probe_interval_s, d.probe_timeout_s)
        self.probes.start()
        emit(StepStarted("apply", f"production {self.previous} -> {self.to}"))
        await self.apply(run)
        if not await _watch_rollout(api, config, emit, rel.rollout_timeout_s):
            raise ActionFailed(f"the rollout did not finish within {rel.rollout_timeout_s:g} s")
        emit(StepFinished("rollout", True, "every pod updated and ready"))
        running = await _prod_digests(api, config)
        if self.soaked_digest and running != {self.soaked_digest}:
            self.digest_note = (
                f"production runs {', '.join(sorted(x[:19] for x in running))}, not the digest that "
                f"soaked in staging ({self.soaked_digest[:19]}): the pipeline rebuilt it"
            )
            emit(Log("warning", self.digest_note))
        emit(
            StepStarted(
                "post-check", f"production health through the load balancer for {rel.post_check_s:g} s"
            )
        )
        start, restarts0 = time.time(), await _restarts(api, config)
        while time.time() - start < rel.post_check_s:
            await asyncio.sleep(0.5)
        bad = [x for x in self.samples if x.probe == "http-prod" and x.at >= start and not x.ok]
        restarted = max(0, await _restarts(api, config) - restarts0)
        self.errors = len(bad) + restarted
        if self.errors > rel.max_post_check_errors:
            raise ActionFailed(
                f"{len(bad)} failed health checks and {restarted} container restarts after the "
                f"rollout (at most {rel.max_post_check_errors} errors allowed)"
            )
        emit(StepFinished("post-check", True, f"healthy throughout ({self.errors} errors)"))
        await self.probes.stop()
        http_failed = sum(1 for x in self.samples if x.probe == "http-prod" and not x.ok)
        summary = f"production runs {self.to} (was {self.previous}); {http_failed} failed health checks"
        return Outcome(Verdict.DONE, summary, self.result())

    async def rollback(self, run: Run) -> str:
        api = await run.kube()
        run.emit(Log("error", f"rolling back to {self.previous}"))
        await _set_image(api, self.config, self.previous)
        await _watch_rollout(api, self.config, run.emit, self.config.release.rollout_timeout_s)
        run.step("rollback", "rolled-back", {"key": "image", "to": self.previous})
        self.rolled_back = True
        await self.close()
        kept = f"; the tag {self.pushed_tag} stays in git" if self.pushed_tag else ""
        return f"production is back on {self.previous}{kept}"

    async def undo(self, run: Run, data: dict[str, Any]) -> str:
        previous = str(data.get("from") or "")
        if not previous:
            return ""
        await _set_image(await run.kube(), self.config, previous)
        return f"production set back to {previous}"

    async def close(self) -> None:
        if self.probes is not None:
            await self.probes.stop()

    def result(self) -> PromoteReport | None:
        if not self.to:
            return None
        ok = sum(1 for x in self.samples if x.probe == "http-prod" and x.ok)
        failed = sum(1 for x in self.samples if x.probe == "http-prod" and not x.ok)
        return PromoteReport(
            from_=self.previous,
            to=self.to,
            tag=self.pushed_tag,
            probes={"http-prod": {"ok": ok, "failed": failed}},
            post_check_errors=self.errors,
            digest_matches_soaked=(not self.digest_note) if self.soaked_digest else None,
            longest_http_outage_s=longest(self.samples, "http-prod"),
            rolled_back=self.rolled_back,
        )


class Promote(_Roll):
    """Staging's exact digest (route ``image``) or a ``v*`` tag through the pipeline (route ``tag``) to
    production, behind the gates; the module's docstring says how."""

    name = "promote"
    title = "Promote a release"
    description = (
        "staging's exact digest (or a v* tag via the pipeline) to production: gates, plan, roll back"
    )
    Params = PromoteParams

    def __init__(self, config: Config, params: PromoteParams) -> None:
        super().__init__(config, params)
        self.build: Build | None = None
        self.tag_plan: _TagPlan | None = None
        self.running: set[str] = set()
        self.prod: dict[str, Any] = {}
        self.gates: list[Check] = []

    def validate(self) -> None:
        if self.params.tag and self.config.release.route != "tag":
            raise UsageError("--tag is for release.route = 'tag'")

    def unconfirmed(self) -> str:
        return f"promote {self.to} to production: add --yes"

    async def preflight(self, run: Run) -> list[Check]:
        r, ns = self.config.release, self.config.namespaces
        api = await run.kube()
        checks, self.build = await gates(self.config, api)
        self.prod = await request(api, "GET", _deploy_path(ns.prod, r.deployment))
        self.running = {digest(p, r.container) for p in await _pods(api, ns.prod, self.prod)}
        if r.route == "tag":
            more, self.tag_plan = await _tag_gates(self.config, self.build, self.params.tag)
            checks += more
        self.gates = checks
        return checks

    async def plan(self, run: Run) -> Plan:
        r, build = self.config.release, self.build
        assert build is not None
        dst = container(self.prod, r.container)
        self.previous = str(dst.get("image", ""))
        lines = config_diff(build.container, dst)
        if self.tag_plan is not None:
            self.to = f"{without_digest(build.image).rsplit(':', 1)[0]}:{self.tag_plan.tag}"
            lines.append(
                f"route tag: tag {self.tag_plan.tag} at {self.tag_plan.commit} "
                f"(staging's build {tag(build.image)}), "
                f"push it to {r.git_repository}; promote.yml builds and deploys it"
            )
        else:
            self.to = build.pinned if build.digest else build.image
            lines.append(f"route image: production set to {self.to}")
        checks = [{"name": c.name, "ok": c.ok, "critical": c.critical, "why": c.why} for c in self.gates]
        plan = Plan([PlanItem("step", line) for line in lines], report={"plan": lines, "gates": checks})
        if build.digest and self.running == {build.digest}:
            plan.nothing_to_do = f"production already runs staging's build ({build.digest[:19]})"
        return plan

    def journal_tag(self) -> str:
        return self.tag_plan.tag if self.tag_plan is not None else ""

    async def apply(self, run: Run) -> None:
        api = await run.kube()
        r, ns, planned, build = self.config.release, self.config.namespaces, self.tag_plan, self.build
        assert build is not None
        self.soaked_digest = build.digest  # what ships must be what soaked: the report checks it
        if planned is None:
            self.changing(run)
            await _set_image(api, self.config, self.to)
            return
        run.emit(StepStarted("tag", f"tag {planned.tag} at {planned.commit} and push to {r.git_repository}"))
        full = await push_tag(
            r.git_repository,
            r.branch,
            planned.commit,
            planned.tag,
            f"Release {planned.tag} (promoted from staging's {tag(build.image)} by opsconsole)",
            operator(),
            git_env(self.config.ssh),
        )
        self.pushed_tag = planned.tag
        run.step("tag", "done", {"tag": planned.tag, "commit": full})
        self.changing(run)  # the pipeline sets production's image from here
        run.emit(StepFinished("tag", True, f"{planned.tag} pushed ({full[:12]})"))
        run.emit(StepStarted("pipeline", f"waiting for promote.yml to set production to {planned.tag}"))
        deadline = time.monotonic() + r.pipeline_timeout_s
        while True:
            d = await request(api, "GET", _deploy_path(ns.prod, r.deployment))
            if tag(str(container(d, r.container).get("image", ""))) == planned.tag:
                run.emit(StepFinished("pipeline", True, f"production's image is {planned.tag}"))
                return
            if time.monotonic() > deadline:
                raise ActionFailed(
                    f"the pipeline did not deploy {planned.tag} within {r.pipeline_timeout_s:g} s"
                )
            await asyncio.sleep(1.0)


class Rollback(_Roll):
    """Production back to the image of its previous revision (its ReplicaSet history)."""

    name = "rollback"
    title = "Roll back production"
    description = "production back to its previous revision's image"

    def unconfirmed(self) -> str:
        return f"roll production back to {self.to}: add --yes"

    async def plan(self, run: Run) -> Plan:
        r, ns = self.config.release, self.config.namespaces
        api = await run.kube()
        prod = await request(api, "GET", _deploy_path(ns.prod, r.deployment))
        rss = await request(api, "GET", f"/apis/apps/v1/namespaces/{ns.prod}/replicasets")
        self.previous = str(container(prod, r.container).get("image", ""))
        earlier = history(rss.get("items", []), r.deployment, r.container)
        target = next((h.image for h in earlier if h.image != self.previous), None)
        if target is None:
            raise Refused(f"no earlier revision than {self.previous} to roll back to")
        self.to = target
        return Plan(
            [PlanItem("change", f"image: {self.previous} -> {target}")],
            f"dry run: would roll production back to {target}",
            {"to": target},
        )

    async def apply(self, run: Run) -> None:
        self.changing(run)
        await _set_image(await run.kube(), self.config, self.to)
