"""The cluster lock: one ``coordination.k8s.io/v1`` Lease, so one mutating action runs at a time.

Why a Lease in the cluster rather than a file: two operators on two laptops must see each other.  The
holder renews it every third of its duration while the action runs; a holder that stops renewing (a
killed console) loses it when ``renewTime + leaseDurationSeconds`` passes, and anyone may take it then.
Taking and renewing use ``resourceVersion`` preconditions (a replace with a stale version is 409), so two
consoles racing for an expired lease cannot both win.  A console finishing its own killed action may take
the lease at once when the holder is the one its journal recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from datetime import UTC, datetime
from typing import Any

from console.clients.kube import KubeError, request
from console.errors import Refused


class LockHeld(Refused):
    """The lock is someone else's: names the holder, since when and what it runs."""


def _micro(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(ts: str | None) -> float | None:
    if not ts:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(ts, fmt).replace(tzinfo=UTC).timestamp()
    return None


class ClusterLock:
    def __init__(
        self,
        api: Any,
        namespace: str,
        name: str,
        holder: str,
        action: str,
        duration_s: int = 15,
        hold_while_unreachable: bool = False,
    ) -> None:
        """``hold_while_unreachable``: renewals that cannot reach the API do not give the lease up (the
        watcher's election: an API outage is when alerts matter most, and nobody else can take the lease
        meanwhile); an action's lock is given up after a lease duration of failed renewals."""
        self.hold_while_unreachable = hold_while_unreachable
        self.api = api
        self.namespace = namespace
        self.name = name
        self.holder = holder
        self.action = action
        self.duration_s = duration_s
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self._lease: dict[str, Any] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()

    def _spec(self, transitions: int, acquired: float | None = None) -> dict[str, Any]:
        now = time.time()
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration_s,
            "acquireTime": _micro(acquired or now),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }

    async def peek(self) -> dict[str, Any] | None:
        """The current lease, or None when there is none."""
        try:
            return await request(self.api, "GET", self.path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    @staticmethod
    def describe(lease: dict[str, Any]) -> str:
        spec = lease.get("spec") or {}
        since = spec.get("acquireTime") or "?"
        what = (lease.get("metadata", {}).get("annotations") or {}).get("opsconsole/action", "an action")
        return f"{spec.get('holderIdentity') or '?'} holds the cluster lock for {what} since {since}"

    @staticmethod
    def expired(lease: dict[str, Any]) -> bool:
        spec = lease.get("spec") or {}
        if not spec.get("holderIdentity"):
            return True
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime")) or 0.0
        return time.time() > renewed + float(spec.get("leaseDurationSeconds") or 0)

    async def acquire(self, may_take_from: str | None = None) -> None:
        """Take the lock or raise :class:`LockHeld` (or KubeError, e.g. 403 for a context without rights)."""
        meta = {
            "name": self.name,
            "namespace": self.namespace,
            "annotations": {"opsconsole/action": self.action},
        }
        lease = await self.peek()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": meta,
                "spec": self._spec(0),
            }
            try:
                self._lease = await request(
                    self.api, "POST", f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases", body
                )
            except KubeError as exc:
                if exc.status == 409:  # created by someone else just now
                    lease = await self.peek()
                    raise LockHeld(self.describe(lease or {})) from None
                raise
        else:
            holder = (lease.get("spec") or {}).get("holderIdentity")
            if not self.expired(lease) and holder != self.holder and holder != may_take_from:
                raise LockHeld(self.describe(lease))
            transitions = int((lease.get("spec") or {}).get("leaseTransitions") or 0) + 1
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {**meta, "resourceVersion": lease["metadata"]["resourceVersion"]},
                "spec": self._spec(transitions),
            }
            try:
                self._lease = await request(self.api, "PUT", self.path, body)
            except KubeError as exc:
                if exc.status == 409:  # another console took it between our read and our write
                    raise LockHeld(self.describe(await self.peek() or {})) from None
                raise
        self._renewer = asyncio.ensure_future(self._renew_loop())

    async def _renew_loop(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self.duration_s / 3)
            assert self._lease is not None
            spec = dict(self._lease.get("spec") or {})
            spec["renewTime"] = _micro(time.time())
            body = {**self._lease, "spec": spec}
            try:
                self._lease = await request(self.api, "PUT", self.path, body)
                failures = 0
            except KubeError as exc:
                if exc.status == 409:  # someone took it: we no longer hold the lock
                    self.lost.set()
                    return
                failures += 1  # unreachable for a moment: keep trying while the lease is still ours
                if not self.hold_while_unreachable and failures * self.duration_s / 3 >= self.duration_s:
                    self.lost.set()
                    return

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if self._lease is None:
            return
        try:
            current = await self.peek()
            if current and (current.get("spec") or {}).get("holderIdentity") == self.holder:
                spec = {**current["spec"], "holderIdentity": None, "renewTime": _micro(time.time())}
                spec = {k: v for k, v in spec.items() if v is not None}
                await request(self.api, "PUT", self.path, {**current, "spec": spec})
        except KubeError:
            pass  # it expires on its own
        self._lease = None


def holder_identity(operator: str, action_id: str) -> str:
    return f"{operator} pid {os.getpid()} {action_id}"
