"""A command in a pod's container through the exec subresource, over ``kubernetes.aio``'s WebSocket client.

The channel protocol is negotiated as kubectl 1.30+ does: ``v5.channel.k8s.io`` first, ``v4.channel.k8s.io``
as the fallback.  Every message is a channel byte and data (0 stdin, 1 stdout, 2 stderr, 3 the final
``Status``).  v5's CLOSE message (``[255, 0]``) ends the command's stdin while its output still flows; a
v4 server has no such message, so a caller that streams stdin gives its length and the command reads
exactly that much (:func:`bounded_stdin`).

The exit code comes from the Status on channel 3 (``Success``, or ``NonZeroExitCode`` with the code in
``details.causes``); a connection that ends without one is a failure, never a success.  A refused
upgrade is asked again as a plain request so the API server's own Status message (a missing container, a
forbidden user) becomes the :class:`KubeError`.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import json
import os
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from console.clients.kube import KubeError, request
from console.errors import OpsError

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, CLOSE = 0, 1, 2, 3, 255
CHUNK = 256 * 1024
KEEP_STDERR = 64 * 1024  # the tail a failure is explained by


class ExecError(OpsError):
    """The command could not be started in the container (the runtime's own message)."""


@dataclass(frozen=True)
class ExecResult:
    code: int
    stderr: bytes
    protocol: str

    def last_line(self) -> str:
        lines = [ln for ln in self.stderr.decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1].strip()[:200] if lines else f"exit code {self.code}"


def _exit_code(status: dict[str, Any]) -> int:
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                return int(cause.get("message", 1))
        return 1
    raise ExecError(str(status.get("message") or "the command could not be started"))


def bounded_stdin(command: list[str], size: int) -> list[str]:
    """``command`` reading exactly ``size`` bytes of stdin, so it ends on a v4 server too (no CLOSE)."""
    return ["sh", "-c", f"head -c {size} | exec {shlex.join(command)}"]


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A local file's bytes, read off the event loop."""
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk


def _ws_client(api: Any) -> Any:
    stream: Any = importlib.import_module("kubernetes.aio.stream")  # the package's own WebSocket support
    return stream.WsApiClient(configuration=api.configuration)


async def _refusal(api: Any, path: str, query: list[tuple[str, str]], exc: Exception) -> KubeError:
    """The API server's Status for a refused upgrade: the same request without the upgrade is refused with
    the same Status (validation comes before the upgrade), and no command runs without one."""
    try:
        await request(api, "POST", path, query=dict(query))
    except KubeError as refused:
        if refused.message != "Upgrade request required":
            return refused
    status = getattr(exc, "status", 0)
    return KubeError(int(status or 0), "UpgradeFailed", str(getattr(exc, "message", exc)))


async def run_in_pod(
    api: Any,
    namespace: str,
    pod: str,
    container: str,
    command: list[str],
    stdout: Callable[[bytes], Awaitable[None]] | None = None,
    stdin: AsyncIterator[bytes] | None = None,
    protocols: tuple[str, ...] = PROTOCOLS,
) -> ExecResult:
    """Run ``command``; its stdout goes to ``stdout`` chunk by chunk (applying its backpressure), stdin
    comes from ``stdin``.  The exit code and the tail of stderr are the result."""
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/exec"
    query = [("command", c) for c in command] + [
        ("container", container),
        ("stdin", "true" if stdin is not None else "false"),
        ("stdout", "true"),
        ("stderr", "true"),
        ("tty", "false"),
    ]
    ws_api = _ws_client(api)
    try:
        method, url, headers, _, _ = await ws_api.param_serialize(
            "GET",
            path,
            query_params=query,
            header_params={"sec-websocket-protocol": ",".join(protocols)},
            auth_settings=["BearerToken"],
        )
        try:
            ctx = (await ws_api.call_api(method, url, headers, _preload_content=False)).response
            async with ctx as ws:
                chosen = ws._response.headers.get("Sec-WebSocket-Protocol", protocols[-1])
                return await _session(ws, chosen, stdout, stdin)
        except aiohttp.WSServerHandshakeError as exc:
            raise await _refusal(api, path, query, exc) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubeError(0, "Unreachable", f"{type(exc).__name__}: {exc}") from None
    finally:
        await ws_api.close()


async def _session(
    ws: aiohttp.ClientWebSocketResponse,
    protocol: str,
    stdout: Callable[[bytes], Awaitable[None]] | None,
    stdin: AsyncIterator[bytes] | None,
) -> ExecResult:
    feeder = asyncio.ensure_future(_feed(ws, stdin, protocol == PROTOCOLS[0])) if stdin is not None else None
    err = bytearray()
    status: dict[str, Any] | None = None
    try:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            channel, data = msg.data[0], msg.data[1:]
            if channel == STDOUT and stdout is not None and data:
                try:
                    await stdout(data)
                except OSError as exc:  # the reader went away (borg stopped): not the API's fault
                    raise ExecError(f"the command's output could not be passed on: {exc}") from None
            elif channel == STDERR:
                err += data
                del err[:-KEEP_STDERR]
            elif channel == ERROR and data:
                status = json.loads(data)
        ended = feeder is not None and feeder.done() and not feeder.cancelled()
        failed = feeder.exception() if feeder is not None and ended else None
        if status is None and failed is not None:  # a command that ended has its own word on its input
            raise failed
    finally:
        if feeder is not None:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
    if status is None:
        raise ExecError("the exec stream ended without the command's exit status")
    return ExecResult(_exit_code(status), bytes(err), protocol)


async def _feed(ws: aiohttp.ClientWebSocketResponse, stdin: AsyncIterator[bytes], v5: bool) -> None:
    try:
        async for chunk in stdin:
            await ws.send_bytes(bytes([STDIN]) + chunk)
        if v5:
            await ws.send_bytes(bytes([CLOSE, STDIN]))
    except Exception:
        await ws.close()  # input that cannot be sent ends the session: the command would wait for it
        raise


class FifoWriter:
    """The writing end of a FIFO that another process (``borg create --read-special``) reads, as an
    asyncio stream.  A FIFO's writer can open only once its reader has: borg reads its FIFOs one after the
    other, so each dump starts when borg reaches it.  The open is retried without blocking (no thread
    waits on it) until the reader comes or :meth:`abandon` says it never will (borg failed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._abandoned = False
        self._writer: asyncio.StreamWriter | None = None

    def abandon(self) -> None:
        self._abandoned = True

    async def _open(self) -> int:
        while not self._abandoned:
            try:
                return os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
            await asyncio.sleep(0.05)
        raise OSError(f"{self.path.name}: the reader went away")

    async def __aenter__(self) -> FifoWriter:
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(await self._open(), "wb", buffering=0)
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, pipe)
        self._writer = asyncio.StreamWriter(transport, protocol, None, loop)
        return self

    async def write(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
