"""The pods' exec subresource as the API server serves it over WebSocket (``…/pods/NAME/exec``).

The request is read and refused the way the real server does (``pkg/registry/core/pod/strategy.go``
ExecLocation, ``streamLocation``; the kubelet's remotecommand server):

- authorised as ``create`` on ``pods/exec`` (websocket upgrades need create, as since Kubernetes 1.31);
- no ``command``: 400 "you must specify at least 1 command"; none of stdin/stdout/stderr: 400 "you must
  specify at least 1 of stdin, stdout, stderr"; no ``container`` on a pod with several: 400 "a container
  name must be specified for pod P, choose one of: [a b]"; a name the pod lacks: 400 "container C is not
  valid for pod P"; a pod not on a node: 400 "pod P does not have a host assigned"; a finished pod: 400
  "cannot exec into a container in a completed pod; current phase is Succeeded"; a container that is not
  running: 500 'container not found ("C")', as the kubelet answers; a request that is not a WebSocket
  upgrade: 400 "Upgrade request required" (the lab speaks no SPDY);
- subprotocols ``v5.channel.k8s.io`` and ``v4.channel.k8s.io`` (the server's preference first, as
  kubectl 1.30+ offers v5 and the Python client v4): each binary message is a channel byte and data —
  0 stdin, 1 stdout, 2 stderr, 3 the error channel, which carries the final ``Status`` (Success, or
  NonZeroExitCode with the exit code in ``details.causes``), 4 resize.  v5 adds 255, CLOSE: ``[255, 0]``
  from the client closes the command's stdin, so a stream can end without ending the connection.

What runs is decided by the twin that owns the pod (an :data:`ExecTarget` hook): a CNPG instance pod runs
the command with that instance's PostgreSQL binaries against its real data directory and socket.  The
command is exec'd as the container runtime would, not through a shell; a missing executable is the
runtime's InternalError on the error channel.  ``tty`` is accepted and ignored (no terminal is
allocated), which the lab's README says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from lab.kube.errors import KubeError, bad_request

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
CHUNK = 64 * 1024


@dataclass(frozen=True)
class ExecEnv:
    """Where a container's command runs in the lab: its PATH, environment, working directory, user."""

    path: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    demote: Callable[[], None] | None = None


ExecTarget = Callable[[dict[str, Any], str], "ExecEnv | None"]


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def _container(pod: dict[str, Any], wanted: str) -> str:
    name = pod["metadata"]["name"]
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    if not wanted:
        if len(names) == 1:
            return str(names[0])
        choices = " ".join(names)
        raise bad_request(f"a container name must be specified for pod {name}, choose one of: [{choices}]")
    if wanted not in names:
        raise bad_request(f"container {wanted} is not valid for pod {name}")
    return wanted


def _check_pod(pod: dict[str, Any], container: str) -> None:
    name = pod["metadata"]["name"]
    if not (pod.get("spec") or {}).get("nodeName"):
        raise bad_request(f"pod {name} does not have a host assigned")
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
    statuses = {c.get("name"): c for c in (pod.get("status") or {}).get("containerStatuses") or []}
    if "running" not in ((statuses.get(container) or {}).get("state") or {}):
        raise KubeError(500, "InternalError", f'container not found ("{container}")')


def _status(code: int | None, failure: str = "") -> dict[str, Any]:
    if failure:
        return {"metadata": {}, "status": "Failure", "message": failure, "reason": "InternalError"}
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


class PodExec:
    """The API server's exec endpoint; ``targets`` are the twins' hooks (first answer wins)."""

    def __init__(self) -> None:
        self.targets: list[ExecTarget] = []
        self.sessions = 0  # exec sessions served (the tests' and benches' evidence)

    def _env_for(self, pod: dict[str, Any], container: str) -> ExecEnv:
        for target in self.targets:
            found = target(pod, container)
            if found is not None:
                return found
        return ExecEnv(path=("/usr/local/bin", "/usr/bin", "/bin"))

    async def serve(self, request: web.Request, pod: dict[str, Any]) -> web.StreamResponse:
        command = request.query.getall("command", [])
        if not command:
            raise bad_request("you must specify at least 1 command")
        wants = {n: _flag(request, n) for n in ("stdin", "stdout", "stderr")}
        if not any(wants.values()):
            raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
        container = _container(pod, request.query.get("container", ""))
        _check_pod(pod, container)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise bad_request("Upgrade request required")
        header = request.headers.get("Sec-WebSocket-Protocol", "")
        offered = [p.strip() for p in header.split(",") if p.strip()]
        chosen = next((p for p in PROTOCOLS if p in offered), None)
        if chosen is None:
            raise bad_request(
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                f"server supports {list(PROTOCOLS)}"
            )
        ws = web.WebSocketResponse(protocols=(chosen,), max_msg_size=0)
        await ws.prepare(request)
        self.sessions += 1
        try:
            await self._run(ws, command, self._env_for(pod, container), wants, chosen == PROTOCOLS[0])
        finally:
            await ws.close()
        return ws

    async def _run(
        self, ws: web.WebSocketResponse, command: list[str], env: ExecEnv, wants: dict[str, bool], v5: bool
    ) -> None:
        search = ":".join(env.path)
        exe = command[0] if "/" in command[0] else shutil.which(command[0], path=search)
        if exe is None or not os.access(exe, os.X_OK):
            await ws.send_bytes(bytes([ERROR]) + json.dumps(_status(None, _not_found(command[0]))).encode())
            return
        proc = await asyncio.create_subprocess_exec(
            exe,
            *command[1:],
            stdin=asyncio.subprocess.PIPE if wants["stdin"] else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": search, "HOME": "/tmp", "LC_ALL": "C.UTF-8", **env.env},
            cwd=env.cwd,
            preexec_fn=env.demote,
            start_new_session=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            asyncio.ensure_future(_pump(proc.stdout, ws, STDOUT if wants["stdout"] else None)),
            asyncio.ensure_future(_pump(proc.stderr, ws, STDERR if wants["stderr"] else None)),
        ]
        outputs: asyncio.Future[list[None]] = asyncio.gather(*pumps)
        feeder = asyncio.ensure_future(_feed(ws, proc, v5))
        try:
            waiting: list[asyncio.Future[Any]] = [outputs, feeder]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not outputs.done() or outputs.cancelled() or outputs.exception() is not None:
                return  # the client went away (or its connection broke): the command goes too
            code = await proc.wait()
            await ws.send_bytes(bytes([ERROR]) + json.dumps(_status(code)).encode())
        finally:
            feeder.cancel()
            outputs.cancel()
            await asyncio.gather(outputs, feeder, return_exceptions=True)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                await proc.wait()


def _not_found(exe: str) -> str:
    return (
        "Internal error occurred: error executing command in container: failed to exec in container: "
        "OCI runtime exec failed: exec failed: unable to start container process: "
        f'exec: "{exe}": executable file not found in $PATH: unknown'
    )


async def _pump(stream: asyncio.StreamReader, ws: web.WebSocketResponse, channel: int | None) -> None:
    """The command's output onto its channel (or nowhere, when the client did not ask for it)."""
    while chunk := await stream.read(CHUNK):
        if channel is not None and not ws.closed:
            await ws.send_bytes(bytes([channel]) + chunk)


async def _feed(ws: web.WebSocketResponse, proc: asyncio.subprocess.Process, v5: bool) -> None:
    """The client's messages: stdin data into the command; v5's CLOSE of channel 0 ends its stdin."""
    async for msg in ws:
        if msg.type != WSMsgType.BINARY or not msg.data:
            continue
        channel, data = msg.data[0], msg.data[1:]
        if channel == STDIN and proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await proc.stdin.drain()
        elif channel == CLOSE and v5 and data[:1] == bytes([STDIN]) and proc.stdin is not None:
            proc.stdin.close()
    # The connection ended: whatever the client did not close is closed now.
    if proc.stdin is not None and not proc.stdin.is_closing():
        proc.stdin.close()
