"""What every mutating action shares: the Kubernetes client, the journal, the cluster lock.

``async with ActionSession(config, "backup", params, emit) as s:`` refuses (``Refused``, exit 3) when an
unfinished action waits in the journal or another console holds the lock, journals the start, renews the
lock while the body runs, and on the way out finishes the journal entry (``done``, ``failed``) and
releases the lock — whatever happened inside.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from console.clients.kube import KubeError
from console.config import Config
from console.events import Event
from console.journal import Journal, operator
from console.lock import ClusterLock, LockHeld, holder_identity


class Refused(Exception):
    """The action may not run now (unfinished action, lock held, no rights): exit 3."""


class ActionSession:
    def __init__(
        self, config: Config, action: str, params: dict[str, Any], emit: Callable[[Event], None]
    ) -> None:
        self.config = config
        self.action = action
        self.params = params
        self.emit = emit
        self.api: Any = None
        self.journal = Journal()
        self.action_id: str | None = None
        self.lock: ClusterLock | None = None
        self.result: dict[str, Any] = {}

    async def __aenter__(self) -> ActionSession:
        from console.sources.kube import api_client

        k = self.config.kubernetes
        try:
            unfinished = self.journal.unfinished()
            if unfinished:
                raise Refused(
                    f"{unfinished[0].action} {unfinished[0].id} did not finish: "
                    "run `--action recover --yes` first"
                )
            self.api = await api_client(k.kubeconfig or None, k.context)
            self.action_id = self.journal.begin(self.action, self.params, operator())
            d = self.config.drill
            self.lock = ClusterLock(
                self.api,
                d.lock_namespace,
                d.lock_name,
                holder_identity(operator(), self.action_id),
                self.action,
                d.lease_duration_s,
            )
            try:
                await self.lock.acquire()
            except LockHeld as exc:
                self.journal.finish(self.action_id, "refused", {"reason": str(exc)})
                raise Refused(str(exc)) from None
            except KubeError as exc:
                self.journal.finish(self.action_id, "refused", {"reason": exc.message})
                raise Refused(f"cannot take the cluster lock: {exc.message}") from None
            self.step("lock", "acquired", {"holder": self.lock.holder})
        except BaseException:
            await self._close()
            raise
        return self

    def step(self, step: str, status: str, data: dict[str, Any] | None = None) -> None:
        if self.action_id is not None:
            self.journal.step(self.action_id, step, status, data)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.action_id is not None and self.lock is not None:
            state = "done" if exc is None else "failed"
            self.journal.finish(
                self.action_id, state, {**self.result, **({"error": str(exc)} if exc is not None else {})}
            )
        await self._close()

    async def _close(self) -> None:
        if self.lock is not None:
            await self.lock.release()
            self.lock = None
        if self.api is not None:
            await self.api.close()
            self.api = None
        self.journal.close()
