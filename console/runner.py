"""The one action pipeline: every action, from the TUI and from scripts, runs through :class:`Runner`.

    read-only gate -> validate -> preflight (+ journal and lock checks) -> plan -> dry run stops here
    -> confirm (typed word in the TUI, --yes headless) -> journal -> lock -> execute -> verify
    -> rollback on failure, abort or interrupt -> exactly one Finished

Why one runner: the refusal of an unfinished action, the lock, the journal and the exit code are decided
in one place, so no action can forget one and the TUI and ``--action`` cannot disagree.  The confirmation
is a callback (:data:`Confirm`): headless it is ``--yes``; the runner screen awaits the operator's typed
word.  Every error becomes the Finished's verdict and one sentence (``console/errors.py``); a bug's
traceback goes to ``errors.log`` in the state directory, never to the screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from console.action import Action, Outcome, Plan
from console.config import Config
from console.errors import (
    Aborted,
    ActionFailed,
    OpsError,
    Refused,
    UsageError,
    Verdict,
    as_ops_error,
    record_crash,
)
from console.events import Check, Event, Finished, Log
from console.journal import Journal, operator, running_holder
from console.lock import ClusterLock, LockHeld, holder_identity

Emit = Callable[[Event], None]
Confirm = Callable[[Action[Any], Plan], Awaitable[bool]]

log = logging.getLogger("opsconsole")


def yes(given: bool) -> Confirm:
    """Headless confirmation: ``--yes``, or an action that needs none (``needs_yes`` false)."""

    async def confirm(action: Action[Any], plan: Plan) -> bool:
        return given or not action.needs_yes

    return confirm


def read_only_refusal(action: type[Action[Any]] | Action[Any], read_only: bool) -> str | None:
    """Why ``action`` may not run in this session, or None (the palette hides what this refuses)."""
    if action.mutating and read_only:
        return f"{action.name} changes the cluster and this session is read-only (--read-only)"
    return None


class Run:
    """One run of one action: what its phases use — the config, the event channel, the journal entry,
    the Kubernetes client and the live sources (both opened on first use, closed at the end)."""

    def __init__(self, config: Config, emit: Emit, live: Any = None, journal: Journal | None = None) -> None:
        self.config = config
        self.emit = emit
        self.journal = journal or Journal()
        self._own_journal = journal is None
        self.action_id: str | None = None
        self.lock: ClusterLock | None = None
        self.interrupted = False
        self._abort = asyncio.Event()
        self._live = live
        self._own_live: Any = None
        self._api: Any = None

    # ---- what the phases use --------------------------------------------------------------------------

    async def kube(self) -> Any:
        """The Kubernetes API client (the live sources' own when they run)."""
        if self._live is not None and getattr(self._live, "kube_api", None) is not None:
            return self._live.kube_api
        if self._api is None:
            from console.sources.kube import api_client

            k = self.config.kubernetes
            self._api = await api_client(k.kubeconfig or None, k.context)
        return self._api

    async def sources(self) -> Any:
        """The live sources (:class:`console.live.LiveSources`), started and synced once."""
        if self._live is None:
            from console.live import LiveSources
            from console.store import ClusterStore

            self._live = self._own_live = LiveSources(ClusterStore(), self.config)
            await self._live.start()
            await self._live.synced(20.0)
        return self._live

    def step(self, step: str, status: str, data: dict[str, Any] | None = None) -> None:
        """One journal line (no-op before the entry exists: a preflight, a dry run)."""
        if self.action_id is not None:
            self.journal.step(self.action_id, step, status, data)

    def applied(self, step: str, key: str, **data: Any) -> None:
        """Journal a change *before* it is made: what a rollback (or a later recovery) undoes."""
        self.step(step, "fault-applied", {"key": key, **data})

    def applied_steps(self) -> list[dict[str, Any]]:
        """The changes journaled and not yet rolled back, oldest first (their data)."""
        if self.action_id is None:
            return []
        entry = self.journal.get(self.action_id)
        return [s["data"] for s in entry.applied()] if entry else []

    def abort(self) -> None:
        self._abort.set()

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    def check_abort(self, what: str) -> None:
        if self.aborted:
            raise Aborted(what)

    async def close(self) -> None:
        if self._own_live is not None:
            await self._own_live.stop()
            self._own_live = None
        if self._api is not None:
            await self._api.close()
            self._api = None
        if self._own_journal:
            self.journal.close()


class Runner:
    """Runs one :class:`~console.action.Action` to exactly one :class:`~console.events.Finished`."""

    def __init__(
        self,
        action: Action[Any],
        emit: Emit,
        *,
        live: Any = None,
        read_only: bool = False,
        parent: Run | None = None,
    ) -> None:
        self.action = action
        self.config = action.config
        self.read_only = read_only
        self.parent = parent
        self.run_ = Run(self.config, emit, live, parent.journal if parent else None)
        self.checks: list[Check] = []
        self.plan: Plan | None = None
        self.finished: Finished | None = None
        self._current: asyncio.Future[Any] | None = None
        self._executing = False
        self._lost: asyncio.Future[None] | None = None
        self._asked = False  # the action's own preflight ran (a dry run then plans even when refused)
        self._advisory: set[str] = set()  # checks shown, not counted (the runner's own, in a dry run)

    @property
    def emit(self) -> Emit:
        return self.run_.emit

    # ---- phases the screens also use ------------------------------------------------------------------

    async def check(self) -> bool:
        """Preflight and plan only (the drill screen's live preflight); True when the action may run."""
        self.action.validate()
        await self._preflight()
        if self._asked:  # the action's plan needs what its preflight found
            with contextlib.suppress(OpsError):
                await self._plan()
        return self.refusal() is None

    def refusal(self) -> str | None:
        """Why the preflight refuses (None: it may run)."""
        counted = [c for c in self.checks if c.name not in self._advisory]
        critical = [c for c in counted if not c.ok and c.critical]
        soft = [c for c in counted if not c.ok and not c.critical]
        if not critical and (not soft or self.action.force()):
            return None
        failed = critical + soft
        hint = "" if critical else " (non-critical: --force runs anyway, logged)"
        return (
            f"preflight refused the {self.action.name}: "
            + "; ".join(f"{c.name}: {c.why}" for c in failed)
            + hint
        )

    def abort(self) -> None:
        """Stop at once and roll back (Escape in the TUI)."""
        self.run_.abort()

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM: abort; a phase that cannot stop on its own is cancelled (then rolled back)."""
        self.run_.interrupted = True
        self.run_.abort()
        if self._current is not None and not (self._executing and getattr(self.action, "abortable", False)):
            self._current.cancel()

    # ---- the pipeline ---------------------------------------------------------------------------------

    async def run(self, confirm: Confirm, dry_run: bool = False) -> Finished:
        """The whole pipeline.  Never raises (an interrupt included): the verdict says how it ended."""
        run = self.run_
        try:
            finished = await self._pipeline(confirm, dry_run)
        except (asyncio.CancelledError, KeyboardInterrupt):
            finished = Finished(
                Verdict.INTERRUPTED, f"{self.action.name} interrupted before anything changed"
            )
            self._finish_journal(finished)
        except BaseException as exc:  # a bug: one sentence, the traceback in errors.log
            finished = Finished(Verdict.FAIL, record_crash(self.action.name, exc))
            self._finish_journal(finished)
        finally:
            for step, cleanup in (("lock", self._release), ("close", self.action.close), ("run", run.close)):
                try:
                    await cleanup()
                except Exception as exc:  # what is left open is said, and the Finished still comes
                    self.emit(Log("warning", f"{step}: {record_crash(f'{self.action.name} {step}', exc)}"))
        self.finished = finished
        self.emit(finished)
        return finished

    async def _phase(self, coro: Awaitable[Any]) -> Any:
        self._current = asyncio.ensure_future(coro)
        try:
            return await self._current
        finally:
            self._current = None

    async def _pipeline(self, confirm: Confirm, dry_run: bool) -> Finished:
        action = self.action
        why = read_only_refusal(action, self.read_only)
        if why:
            return Finished(Verdict.REFUSED, why)
        try:
            action.validate()
            await self._phase(self._preflight(dry_run))
            refusal = self.refusal()
            if refusal and not (dry_run and self._asked):  # a dry run still shows what it would do
                return Finished(Verdict.REFUSED, refusal, self._dry_report(None))
            plan = await self._phase(self._plan())
        except Exception as exc:
            ops = as_ops_error(exc)
            if ops is None:
                raise
            return Finished(ops.verdict, ops.sentence())
        if refusal:
            return Finished(Verdict.REFUSED, refusal, self._dry_report(plan))
        if dry_run:
            return Finished(plan.verdict, plan.summary, self._dry_report(plan))
        if plan.nothing_to_do is not None:
            return Finished(plan.done_verdict, plan.nothing_to_do, plan.report or {})
        if not await self._phase(confirm(action, plan)):
            return Finished(Verdict.UNCONFIRMED, action.unconfirmed(), self._dry_report(plan))
        try:
            await self._phase(self._begin())
        except Refused as exc:
            return Finished(Verdict.REFUSED, exc.sentence())
        if self.run_.interrupted:  # Ctrl-C while the lock was taken: nothing has changed yet
            finished = Finished(Verdict.INTERRUPTED, f"{action.name} interrupted before anything changed")
            self._finish_journal(finished)
            return finished
        return await self._execute()

    async def _preflight(self, dry_run: bool = False) -> None:
        """The runner's checks (no unfinished action, the lock free) around the action's own.  A dry run
        only looks, so there the runner's checks inform and do not refuse."""
        action, run = self.action, self.run_
        journal = [self._journal_check()] if action.mutating and not action.resumes else []
        if journal and not journal[0].ok and not dry_run:  # refused whatever the cluster says: ask nothing
            self.checks = journal
            self.emit(journal[0])
            return
        self._asked = True
        checks = await action.preflight(run)
        lock = [await self._lock_check()] if action.takes_lock and not self._inherits_lock() else []
        if dry_run:
            journal, lock = (
                [dataclasses.replace(c, critical=False) for c in group] for group in (journal, lock)
            )
            self._advisory = {c.name for c in (*journal, *lock)}
        self.checks = [*journal, *checks, *lock]
        for c in self.checks:
            self.emit(c)

    def _inherits_lock(self) -> bool:
        """A stage of an action that holds the cluster lock runs under that lock (an upgrade's drains and
        its HA re-apply): the Lease is one, and its holder is the parent."""
        return self.parent is not None and self.parent.lock is not None

    def _journal_check(self) -> Check:
        parent = self.parent.action_id if self.parent else None
        left = [e for e in self.run_.journal.unfinished() if e.id != parent]
        if not left:
            return Check("no-unfinished-action", True, True, "no unfinished action in the journal")
        e = left[0]
        return Check(
            "no-unfinished-action",
            False,
            True,
            f"{e.action} {e.id} did not finish: run `--action recover --yes`",
        )

    async def _lock_check(self) -> Check:
        from console.clients.kube import KubeError

        try:
            lease = await self._lock(await self.run_.kube()).peek()
        except KubeError as exc:
            return Check("lock-free", False, True, f"cannot read the cluster lock: {exc.message}")
        except OpsError as exc:
            return Check("lock-free", False, True, f"cannot read the cluster lock: {exc.sentence()}")
        if lease is None or ClusterLock.expired(lease):
            return Check("lock-free", True, True, "no other action holds the cluster lock")
        return Check("lock-free", False, True, ClusterLock.describe(lease))

    def _lock(self, api: Any) -> ClusterLock:
        d = self.config.drill
        holder = holder_identity(operator(), self.run_.action_id or "preflight")
        label = getattr(self.action, "lock_label", None) or self.action.name
        return ClusterLock(api, d.lock_namespace, d.lock_name, holder, label, d.lease_duration_s)

    async def _plan(self) -> Plan:
        plan = await self.action.plan(self.run_)
        self.plan = plan
        for item in plan.items:
            self.emit(item)
        return plan

    def _dry_report(self, plan: Plan | None) -> Any:
        """What a dry run (or a refusal) reports: the plan's own report, with the preflight it passed."""
        preflight = [{"name": c.name, "ok": c.ok, "critical": c.critical, "why": c.why} for c in self.checks]
        if plan is not None and plan.report is not None:
            if isinstance(plan.report, dict) and "preflight" not in plan.report:
                return {**plan.report, "preflight": preflight}
            return plan.report
        return {"plan": [i.message for i in plan.items] if plan else [], "preflight": preflight}

    async def _begin(self) -> None:
        """The journal entry, then the lock (a lock refused finishes the entry as refused)."""
        action, run = self.action, self.run_
        if not action.journaled:
            return
        run.action_id = run.journal.begin(action.name, action.journal_params(), running_holder())
        soft = [c.name for c in self.checks if not c.ok and not c.critical]
        if soft:
            run.step("preflight", "forced", {"checks": soft})
            self.emit(Log("warning", f"--force: running past failed checks {', '.join(soft)}"))
        if not action.takes_lock:
            return
        if self._inherits_lock():
            run.step(
                "lock",
                "inherited",
                {"holder": self.parent.lock.holder if self.parent and self.parent.lock else ""},
            )
            return
        from console.clients.kube import KubeError

        lock = self._lock(await run.kube())
        try:
            await lock.acquire()
        except (LockHeld, KubeError) as exc:
            text = str(exc) if isinstance(exc, LockHeld) else f"cannot take the cluster lock: {exc.message}"
            run.journal.finish(run.action_id, "refused", {"reason": text})
            run.action_id = None
            raise Refused(text) from None
        run.lock = lock
        run.step("lock", "acquired", {"holder": lock.holder})
        self._lost = asyncio.ensure_future(self._watch_lock(lock))

    async def _watch_lock(self, lock: ClusterLock) -> None:
        """A lost lock means another console may start an action now: stop and roll back — except for
        an action that replaces the Lease itself (``keeps_going_without_lock``: a cluster restore)."""
        await lock.lost.wait()
        if getattr(self.action, "keeps_going_without_lock", False):
            self.emit(Log("info", "the cluster lock is gone with the state it was in (expected here)"))
            return
        self.emit(Log("error", "the cluster lock was lost: stopping and rolling back"))
        self.run_.abort()
        if self._executing and not getattr(self.action, "abortable", False) and self._current is not None:
            self._current.cancel()

    async def _execute(self) -> Finished:
        action, run = self.action, self.run_
        self._executing = True
        try:
            outcome: Outcome = await self._phase(action.execute(run))
            why = await self._phase(action.verify(run))
            if why is not None:
                raise ActionFailed(f"verification failed: {why}")
        except BaseException as exc:
            return await self._failed(exc)
        finally:
            self._executing = False
        verdict = outcome.verdict
        if run.interrupted and verdict is Verdict.ABORTED:
            verdict = Verdict.INTERRUPTED
        report = outcome.report if outcome.report is not None else action.result()
        finished = Finished(
            verdict, outcome.summary, report if report is not None else {}, outcome.report_path
        )
        self._finish_journal(finished)
        return finished

    async def _failed(self, exc: BaseException) -> Finished:
        """A failed, aborted or interrupted execute: roll back what was applied, then say so."""
        action, run = self.action, self.run_
        if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
            verdict, why = Verdict.INTERRUPTED, "interrupted"
        elif isinstance(exc, Aborted):
            verdict, why = Verdict.ABORTED, f"aborted ({exc.sentence()})"
        else:
            ops = as_ops_error(exc)
            why = ops.sentence() if ops is not None else record_crash(action.name, exc)
            # A refusal that came during the run (no rights, a lock it needed) stays one while nothing
            # was changed.
            refused = ops is not None and ops.verdict is Verdict.REFUSED and not run.applied_steps()
            verdict = Verdict.REFUSED if refused else Verdict.FAIL
        self.emit(Log("error", f"{why} — rolling back" if action.mutating else why))
        try:
            applied = action.can_roll_back() and bool(run.applied_steps())
            said = await action.rollback(run) if applied else ""
        except BaseException as err:  # the rollback itself failed: the cluster is not as before
            ops = as_ops_error(err)
            text = ops.sentence() if ops is not None else record_crash(f"{action.name} rollback", err)
            summary = f"{why}; the rollback failed too: {text} — `--action recover --yes` finishes it"
            # The entry stays unfinished: what is still applied is recover's to undo, and every other
            # mutating action refuses until then.
            if run.action_id is not None:
                run.journal.step(run.action_id, "rollback", "failed", {"error": text})
                run.journal.let_go(run.action_id)
                run.action_id = None
            return Finished(Verdict.FAIL, summary, action.result() or {})
        if verdict is Verdict.FAIL and applied:
            verdict = Verdict.ROLLED_BACK
        failed = verdict in (Verdict.FAIL, Verdict.ROLLED_BACK, Verdict.REFUSED)
        summary = f"{action.name} failed: {why}" if failed else f"{action.name} {why}"
        if said:
            summary += f"; rolled back: {said}"
        finished = Finished(verdict, summary, action.result() or {})
        self._finish_journal(finished)
        return finished

    def _finish_journal(self, finished: Finished) -> None:
        run = self.run_
        if run.action_id is None:
            return
        state = {
            Verdict.ABORTED: "aborted",
            Verdict.INTERRUPTED: "aborted",
            Verdict.ROLLED_BACK: "failed",
            Verdict.FAIL: "failed",
        }.get(finished.verdict, "done")
        result = {"verdict": finished.verdict.value, "summary": finished.summary}
        if finished.report_path:
            result["report"] = finished.report_path
        run.journal.finish(run.action_id, state, result)
        run.action_id = None

    async def _release(self) -> None:
        if self._lost is not None:
            self._lost.cancel()
        run = self.run_
        if run.action_id is not None:  # ended by an interrupt between begin and finish
            run.journal.finish(run.action_id, "failed", {"error": "interrupted"})
            run.action_id = None
        if run.lock is not None:
            await run.lock.release()
            run.lock = None


async def run_sub(parent: Run, action: Action[Any]) -> Finished:
    """Run ``action`` as one stage of another (provision's workloads, the disaster recovery's steps): its
    own journal entry and lock, its events passed on, its Finished one line of the parent's."""

    def forward(e: Event) -> None:
        if isinstance(e, Finished):
            parent.emit(Log("info" if e.exit_code == 0 else "error", f"{e.verdict}: {e.summary}"))
        else:
            parent.emit(e)

    runner = Runner(action, forward, parent=parent)
    done = await runner.run(yes(True))
    if done.verdict is Verdict.INTERRUPTED:  # the parent was interrupted through its stage: so is it
        raise asyncio.CancelledError
    return done


__all__ = ["Confirm", "Refused", "Run", "Runner", "UsageError", "read_only_refusal", "run_sub", "yes"]
