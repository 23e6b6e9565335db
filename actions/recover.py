"""``--action recover``: finish what a killed console left unfinished — or, when the cluster's server is
gone from the Hetzner project, run the disaster recovery (:mod:`actions.disaster`).

The journal knows each unfinished action's applied faults (recorded *before* they were applied); this
undoes them in reverse order — each undo is idempotent — waits for full steady state, and marks the
action ``recovered``.  The dead console's lease is taken over at once when its holder is the one the
journal recorded (it is ours); any other holder must let it expire first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from actions.drill import EXIT_FAIL, EXIT_OK, EXIT_REFUSED, Drill, DrillRequest
from console.clients.kube import KubeError
from console.config import Config
from console.events import Event, Finished, Log
from console.journal import Journal
from console.lock import LockHeld


async def recover(config: Config, emit: Callable[[Event], None], yes: bool) -> int:
    journal = Journal()
    try:
        entries = journal.unfinished()
        if not entries:
            from actions.disaster import is_disaster, run_disaster_recovery

            if await asyncio.to_thread(is_disaster, config):
                journal.close()
                return await run_disaster_recovery(config, emit, yes)
            emit(Finished("DONE", EXIT_OK, "nothing to recover: every journaled action finished"))
            return EXIT_OK
        if not yes:
            names = ", ".join(f"{e.action} {e.id}" for e in entries)
            emit(Finished("REFUSED", 2, f"unfinished: {names}; add --yes to roll them back"))
            return 2
        code = EXIT_OK
        for entry in entries:
            code = max(code, await _recover_one(config, journal, entry.id, emit))
        return code
    finally:
        journal.close()


async def _recover_one(
    config: Config, journal: Journal, action_id: str, emit: Callable[[Event], None]
) -> int:
    entry = journal.get(action_id)
    assert entry is not None
    params = entry.params
    drill = Drill(
        config,
        DrillRequest(str(params.get("scenario") or "node-down"), params.get("target")),
        emit,
        journal=journal,
    )
    try:
        await drill.start_sources()
        drill.action_id = entry.id
        previous = next((s["data"].get("holder") for s in entry.steps if s["step"] == "lock"), None)
        drill.lock = drill._lock()
        try:
            await drill.lock.acquire(may_take_from=previous)
        except (LockHeld, KubeError) as exc:
            emit(Finished("REFUSED", EXIT_REFUSED, f"cannot recover {entry.id} now: {exc}"))
            return EXIT_REFUSED
        emit(Log("info", f"recovering {entry.action} {entry.id}: {len(entry.applied())} fault(s) to undo"))
        journal.step(entry.id, "recover", "started", {})
        await drill.rollback()
        ok = await drill._steady()
        journal.finish(entry.id, "recovered", {"steady": ok})
        await drill.lock.release()
        summary = f"{entry.action} {entry.id} rolled back; " + (
            "steady state" if ok else "not yet at steady state"
        )
        emit(Finished("DONE" if ok else "FAIL", EXIT_OK if ok else EXIT_FAIL, summary))
        return EXIT_OK if ok else EXIT_FAIL
    finally:
        if drill.live is not None:
            await drill.live.stop()
