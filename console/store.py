"""ClusterStore: sources write raw objects in; subscribers are told, coalesced, which kinds changed.

A burst of watch events (a rollout, a node failure) becomes one notification per subscriber per tick:
``notify`` schedules a single pending callback on the loop, and every change until it runs joins it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from console.model import SourceState, SourceStatus

Key = tuple[str, str]
Subscriber = Callable[[set[str]], None]


class ClusterStore:
    def __init__(self) -> None:
        self.objects: dict[str, dict[Key, dict[str, Any]]] = {}
        self.sources: dict[str, SourceStatus] = {}
        self.extra: dict[str, Any] = {}  # non-Kubernetes data (Hetzner, probes), by source name
        # What changed since the last ``view()``, per kind: the keys written, or None after a relist.  A
        # view carries its own, numbered (``generation``), so a builder reading views one after another
        # can redo only what changed (snapshot.pod_index) and knows when it missed one.
        self.changes: dict[str, set[Key] | None] = {}
        self.generation = 0
        self.is_view = False
        self._subscribers: list[Subscriber] = []
        self._changed: set[str] = set()
        self._pending = False

    # ---- writes (sources) -----------------------------------------------------------------------------

    @staticmethod
    def key(obj: dict[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        return str(meta.get("namespace") or ""), str(meta.get("name") or "")

    def replace(self, kind: str, items: list[dict[str, Any]]) -> None:
        """A (re)list: the kind's full state."""
        self.objects[kind] = {self.key(o): o for o in items}
        self.changes[kind] = None
        self._touch(kind)

    def apply(self, kind: str, event_type: str, obj: dict[str, Any]) -> None:
        table = self.objects.setdefault(kind, {})
        key = self.key(obj)
        if event_type == "DELETED":
            table.pop(key, None)
        else:
            table[key] = obj
        changed = self.changes.setdefault(kind, set())
        if changed is not None:
            changed.add(key)
        self._touch(kind)

    def set_extra(self, name: str, value: Any) -> None:
        self.extra[name] = value
        self._touch(name)

    def set_source(
        self, name: str, state: SourceState, error: str | None = None, at: float | None = None
    ) -> None:
        """Record a source's outcome; ``at`` is when its data was taken, if not now (a cached answer)."""
        prev = self.sources.get(name)
        if state is SourceState.OK:
            status = SourceStatus(name, state, at or time.time(), None)
        else:
            if (
                prev is not None
                and prev.state in (SourceState.OK, SourceState.STALE)
                and state is not SourceState.FORBIDDEN
            ):
                state = SourceState.STALE
            status = SourceStatus(name, state, prev.updated_at if prev else None, error)
        if prev != status:
            self.sources[name] = status
            self._touch(f"source:{name}")

    # ---- reads (views) --------------------------------------------------------------------------------

    def view(self) -> ClusterStore:
        """A copy to read in another thread while the sources go on writing this one.

        The tables are copied (cheap next to a build); the objects in them are shared — a watch event
        replaces an object, never changes it in place.  Nobody subscribes to a view.  The view takes the
        changes made since the previous one (``changes``, ``generation``), which a builder that sees every
        view uses to redo only what changed (``snapshot.SnapshotBuilder``).
        """
        copy = ClusterStore()
        copy.objects = {kind: dict(table) for kind, table in self.objects.items()}
        copy.sources = dict(self.sources)
        copy.extra = dict(self.extra)
        self.generation += 1
        copy.changes, self.changes = self.changes, {}
        copy.generation, copy.is_view = self.generation, True
        return copy

    def items(self, kind: str) -> list[dict[str, Any]]:
        return list(self.objects.get(kind, {}).values())

    def subscribe(self, callback: Subscriber) -> None:
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def _touch(self, kind: str) -> None:
        self._changed.add(kind)
        if self._pending or not self._subscribers:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._pending = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._pending = False
        changed, self._changed = self._changed, set()
        for callback in list(self._subscribers):
            callback(changed)
