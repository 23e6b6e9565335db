"""``--action recover``: finish what a killed console left unfinished — or, when the cluster's server is
gone from the Hetzner project, run the disaster recovery (:mod:`actions.disaster`).

The journal knows each unfinished action's applied changes (recorded *before* they were made); the
action that made them undoes them (its :meth:`~console.action.Action.undo`, found in the registry by the
entry's name — entries written by earlier versions use the same keys), newest first; then full steady
state is waited for and the entry marked ``recovered``.  The dead console's lease is taken over at once
when its holder is the one the journal recorded (it is ours); any other holder must let it expire first.
"""

from __future__ import annotations

from typing import Any

from console.action import Action, NoParams, Outcome, Plan
from console.clients.kube import KubeError
from console.config import Config
from console.errors import Refused, Verdict
from console.events import Log, PlanItem
from console.journal import Entry, operator
from console.lock import ClusterLock, LockHeld, holder_identity
from console.runner import Run


class Recover(Action[NoParams]):
    name = "recover"
    title = "Recover an unfinished action"
    description = (
        "roll back what a killed console left applied (from the journal), then wait for steady state"
    )
    resumes = True  # it is what the other actions' refusal points at
    takes_lock = False  # it takes over the dead console's lease itself; the disaster's steps take their own
    journaled = False  # each entry it finishes is marked in place; the disaster's steps journal themselves
    guide = (
        "Disaster recovery: the cluster's server is gone. Type the cluster's name to rebuild it from the "
        "latest backups."
    )

    def __init__(self, config: Config, params: NoParams) -> None:
        super().__init__(config, params)
        self.entries: list[Entry] = []
        self.disaster = False
        self.timings: dict[str, float] = {}

    def confirm_word(self) -> str:
        return self.config.cluster.name

    def unconfirmed(self) -> str:
        if self.disaster:
            return "the cluster's server is gone: add --yes to run the recovery above"
        names = ", ".join(f"{e.action} {e.id}" for e in self.entries)
        return f"unfinished: {names}; add --yes to roll them back"

    async def plan(self, run: Run) -> Plan:
        import asyncio

        from actions.disaster import is_disaster, plan_lines

        self.entries = run.journal.unfinished()
        if self.entries:
            items = [
                PlanItem(
                    "step",
                    f"roll back {e.action} {e.id}: "
                    + (", ".join(s["data"].get("key", "?") for s in e.applied()) or "nothing applied"),
                    e.id,
                )
                for e in self.entries
            ]
            return Plan(items, "dry run: these unfinished actions would be rolled back")
        self.disaster = await asyncio.to_thread(is_disaster, self.config)
        if self.disaster:
            lines = plan_lines(self.config)
            return Plan(
                [PlanItem("step", line) for line in lines],
                "the cluster's server is gone from the project; these steps rebuild it",
                {"plan": lines},
            )
        return Plan(nothing_to_do="nothing to recover: every journaled action finished")

    async def execute(self, run: Run) -> Outcome:
        if self.disaster:
            from actions.disaster import run_disaster_recovery

            return await run_disaster_recovery(run, self.timings)
        steady, refused = True, []
        for entry in self.entries:  # one that cannot be recovered now does not keep the others waiting
            try:
                steady = await self._recover_one(run, entry) and steady
            except Refused as exc:
                refused.append(exc.sentence())
                run.emit(Log("error", exc.sentence()))
        done = [e for e in self.entries if not any(e.id in r for r in refused)]
        said = "steady state" if steady else "not yet at steady state"
        summary = f"{', '.join(f'{e.action} {e.id}' for e in done)} rolled back; {said}" if done else ""
        if refused:
            return Outcome(Verdict.REFUSED, "; ".join([*filter(None, [summary]), *refused]))
        return Outcome(Verdict.DONE if steady else Verdict.FAIL, summary)

    def result(self) -> dict[str, Any] | None:
        return {"timings_s": self.timings} if self.timings else None

    async def _recover_one(self, run: Run, entry: Entry) -> bool:
        from actions.registry import ACTIONS
        from actions.steady import until_steady

        live = await run.sources()
        api = await run.kube()
        d = self.config.drill
        previous = next((s["data"].get("holder") for s in entry.steps if s["step"] == "lock"), None)
        lock = ClusterLock(
            api,
            d.lock_namespace,
            d.lock_name,
            holder_identity(operator(), entry.id),
            "recover",
            d.lease_duration_s,
        )
        try:
            await lock.acquire(may_take_from=previous)
        except (LockHeld, KubeError) as exc:
            raise Refused(f"cannot recover {entry.id} now: {exc}") from None
        # The undo powers servers on and moves targets: the Hetzner source polls at the drill's pace
        # meanwhile, or the steady state would wait up to a whole budgeted interval to be seen.
        hetzner = live.sources.get("hetzner") if hasattr(live, "sources") else None
        if hetzner is not None and hasattr(hetzner, "boost"):
            hetzner.boost(d.hetzner_poll_s)
        try:
            run.emit(
                Log("info", f"recovering {entry.action} {entry.id}: {len(entry.applied())} change(s) to undo")
            )
            run.journal.step(entry.id, "recover", "started", {})
            cls = ACTIONS.get(entry.action)
            owner = cls(self.config, cls.Params()) if cls is not None else None
            for step in reversed(entry.applied()):
                said = await owner.undo(run, step["data"]) if owner is not None else ""
                run.journal.step(entry.id, "rollback", "rolled-back", {"key": step["data"].get("key")})
                if said:
                    run.emit(Log("info", said))
            gaps = await until_steady(live, self.config, api, d.steady_timeout_s, run.emit)
            run.journal.finish(entry.id, "recovered", {"steady": not gaps})
            return not gaps
        finally:
            if hetzner is not None and hasattr(hetzner, "boost"):
                hetzner.boost(None)
            await lock.release()
