"""One watcher alerts: the holder of a ``coordination.k8s.io`` Lease (the cluster lock's code, its own
Lease).  The others stand by, judging the same findings without sending, and take over when the holder
stops renewing (``lease_duration_s``); a watcher that stops cleanly gives the Lease up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from console.clients.kube import KubeError
from console.lock import ClusterLock, LockHeld

log = logging.getLogger("opsconsole.watch")


class Election:
    def __init__(
        self,
        api: Any,
        namespace: str,
        name: str,
        identity: str,
        duration_s: int,
        on_change: Callable[[bool], None],
        previous: str | None = None,
    ) -> None:
        """``previous``: the identity this watcher's journal last held the Lease as — a restarted watcher
        takes its own Lease back at once instead of waiting for it to expire (and missing a resolve)."""
        self.lock = ClusterLock(
            api, namespace, name, identity, "watch", duration_s, hold_while_unreachable=True
        )
        self.on_change = on_change
        self.previous = previous
        self.decided = asyncio.Event()  # the first attempt is over: leader or standby
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        retry = self.lock.duration_s / 3
        while True:
            try:
                await self.lock.acquire(may_take_from=self.previous)
            except LockHeld:
                self.decided.set()
                await asyncio.sleep(retry)
                continue
            except (TimeoutError, KubeError, OSError) as exc:
                log.warning("election: %s; trying again in %.0f s", _sentence(exc), retry)
                self.decided.set()
                await asyncio.sleep(retry)
                continue
            log.info("election: this watcher holds %s and sends", self.lock.name)
            self.on_change(True)
            self.decided.set()
            await self.lock.lost.wait()
            self.lock.lost.clear()
            log.info("election: %s was taken over; standing by", self.lock.name)
            self.on_change(False)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.lock.release()


def _sentence(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
