"""What every live source is (:class:`Source`), and the one loop of those that look every so often
(:class:`PollingSource`: the Hetzner API, PostgreSQL, the health URLs, DNS, Borg).

A polling source looks, records what it saw (or why it could not) in the store, and waits for its next
look — measured from the start of this one, never overlapping it (a one-shot timer re-armed after each
poll, as Dolphie's worker manager does).  ``refresh()`` looks now.  A poll that raises marks the source
unreachable with the error's first line: a failing source never stops the others or the screen.  The
Kubernetes source is a :class:`Source` too, driven by watches instead of a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import ClassVar

from console.config import Config
from console.model import SourceState
from console.store import ClusterStore


class Source:
    """Started and stopped with the others (``console/live.py``); ``synced`` once it answered once."""

    name: ClassVar[str]

    def __init__(self, store: ClusterStore, config: Config) -> None:
        self.store = store
        self.config = config
        self.synced = asyncio.Event()

    def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop it (idempotent)."""

    def refresh(self) -> None:
        """Look again now (a no-op for a source that is told of changes)."""


class PollingSource(Source):
    """A source that looks every :meth:`interval` seconds: subclasses give :meth:`poll`."""

    def __init__(self, store: ClusterStore, config: Config) -> None:
        super().__init__(store, config)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def interval(self) -> float:
        """Seconds from the start of one look to the next (asked after each look)."""
        raise NotImplementedError

    async def poll(self) -> None:
        """One look: write what was seen and the source's state into the store."""
        raise NotImplementedError

    async def setup(self) -> None:
        """Before the first look (a session to open, data to wait for)."""

    async def close(self) -> None:
        """After the last (what :meth:`setup` opened)."""

    def start(self) -> None:
        self.store.set_source(self.name, SourceState.PENDING)
        self._task = asyncio.ensure_future(self._loop())

    def refresh(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.close()

    async def _loop(self) -> None:
        await self.setup()
        while True:
            started = time.monotonic()
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one clear line on the panel; never a crash
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                self.store.set_source(self.name, SourceState.UNREACHABLE, first)
            self.synced.set()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                wait = max(0.0, self.interval() - (time.monotonic() - started))
                await asyncio.wait_for(self._wake.wait(), wait)
