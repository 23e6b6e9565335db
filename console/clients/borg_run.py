"""Long-running borg commands (create, extract, prune, check, compact) with progress and borg's exit codes.

Borg's exit codes are its verdict: 0 ok, 1 warning (e.g. a file changed while read), 2 error.  Progress
comes from ``--progress --log-json``: one JSON object per stderr line (``archive_progress``,
``progress_percent``), turned into a callback; ``log_message`` lines keep borg's own words for errors.
The environment (``BORG_RSH``, passphrase or passcommand) is built by :func:`console.clients.borg.borg_env`
and passed to the process only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from console.clients.borg import LOCK_WAIT_ENV, BorgError, _reason

RESULT = {0: "ok", 1: "warning", 2: "error"}


@dataclass
class BorgResult:
    code: int
    stdout: bytes
    messages: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return RESULT.get(self.code, "error")

    def json(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.stdout)
        except ValueError:
            return {}
        return data


async def borg_run(
    args: list[str],
    env: dict[str, str],
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    cwd: Path | None = None,
    stdout: Any = asyncio.subprocess.PIPE,
    timeout: float = 3600.0,
) -> BorgResult:
    """Run ``borg ARGS`` with JSON logging; raise :class:`BorgError` (borg's reason) on exit code ≥ 2."""
    wait = env.get(LOCK_WAIT_ENV)
    if wait and args and args[0] in ("create", "extract", "prune", "compact", "check", "list", "delete"):
        args = [args[0], "--lock-wait", wait, *args[1:]]
    try:
        proc = await asyncio.create_subprocess_exec(
            "borg",
            *args,
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise BorgError("borg is not installed (Debian package borgbackup)") from None
    messages: list[str] = []

    async def read_stderr() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                messages.append(line)
                continue
            if doc.get("type") in ("archive_progress", "progress_percent", "progress_message"):
                if on_progress is not None:
                    on_progress(doc)
            elif doc.get("message"):
                messages.append(str(doc["message"]))

    async def read_stdout() -> bytes:
        if proc.stdout is None:
            return b""
        return await proc.stdout.read()

    readers = asyncio.gather(read_stdout(), read_stderr())

    def settle() -> None:
        # The readers end cancelled when we stop waiting: take their outcome, or asyncio prints
        # "exception was never retrieved" with a traceback on the operator's terminal.
        if readers.done() and not readers.cancelled():
            readers.exception()

    try:
        out, _ = await asyncio.wait_for(readers, timeout)
        await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        settle()
        raise BorgError(f"borg {args[0]}: no answer within {timeout:g} s") from None
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        settle()
        raise
    result = BorgResult(int(proc.returncode or 0), out, messages)
    if result.code >= 2:
        raise BorgError(f"borg {args[0]}: {_reason(messages)}")
    return result
