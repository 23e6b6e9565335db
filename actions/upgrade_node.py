"""One node's K3s, changed and put back over SSH — what both upgrade routes share with the rollback.

* :func:`journal_install` records the node's change *before* it is made: its previous version, its flags
  and ``K3S_*`` environment as read back from the Node (never the token), so a rollback — or
  ``--action recover`` after a killed console, with nothing but the journal — can put it back.
* :func:`until_ready` waits for the Node to be Ready at the version, through the server's restart (the API
  does not answer for a while) and watching the service: an agent's unit is ``Type=exec``, so an installer
  whose new k3s then fails to start still exits 0 — ``systemctl is-active`` not ``active`` three times
  running (3 s) is the failure, not a five-minute timeout.
* :func:`put_back` runs the installer with the old version first when the node is not healthy at it — even
  when the API does not answer, which is what a server whose new version fails looks like.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from console.clients.kube import TRANSIENT, KubeError, answered, request, set_schedulable
from console.config import Config
from console.errors import ActionFailed
from console.events import Event, Log
from console.k3s import (
    TOKEN_PATH,
    installer_command,
    node_args,
    node_env,
    node_version,
    read_root_file,
    run_installer,
    service_state,
)
from console.kubeobj import is_ready
from console.runner import Run

SERVICE_CHECK_S = 1.0
SERVICE_STRIKES = 3


def journal_install(
    run: Run, node: dict[str, Any], previous: str, plans: list[str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """Journal ``k3s:<node>`` (what :func:`put_back` needs; ``plans``: the SUC Plans a rollback deletes
    first); the flags and environment to install with."""
    name = node["metadata"]["name"]
    args, env = node_args(node), node_env(node)
    extra = {"plans": plans} if plans else {}
    run.applied("install", f"k3s:{name}", node=name, previous=previous, args=args, env=env, **extra)
    return args, env


async def install(config: Config, name: str, args: list[str], env: dict[str, str], version: str) -> str:
    """The official installer on ``name`` at ``version`` with its own flags; an agent's token from the
    server's token file, on stdin."""
    server = next(n for n in config.nodes if n.role == "server")
    token = (await read_root_file(config, server, TOKEN_PATH)).strip() if args[0] == "agent" else None
    return await run_installer(config, config.node(name), installer_command(args, version, env), token)


async def until_ready(
    config: Config, api: Any, name: str, role: str, version: str, emit: Callable[[Event], None]
) -> None:
    """Until the Node is Ready at ``version``; ActionFailed when its service does not run or the time
    (``[provision] node_ready_timeout_s``) is up."""
    timeout = config.provision.node_ready_timeout_s
    deadline, next_check, strikes, said = time.monotonic() + timeout, time.monotonic(), 0, False
    while time.monotonic() < deadline:
        try:
            obj = await request(api, "GET", f"/api/v1/nodes/{name}")
        except KubeError as exc:
            if exc.status not in TRANSIENT:
                raise
            if not said:
                emit(Log("info", f"the API does not answer while {name} restarts: waiting"))
                said = True
        else:
            if is_ready(obj) and node_version(obj) == version:
                return
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + SERVICE_CHECK_S
            state = await service_state(config, config.node(name), role)
            strikes = 0 if state == "active" else strikes + 1
            if strikes >= SERVICE_STRIKES:
                unit = "k3s" if role == "server" else "k3s-agent"
                raise ActionFailed(f"{unit} does not run on {name} after the installer (systemctl: {state})")
        await asyncio.sleep(0.5)
    raise ActionFailed(f"{name} is not Ready at {version} after {timeout:g} s")


async def put_back(
    config: Config,
    api: Any,
    name: str,
    previous: str,
    args: list[str],
    env: dict[str, str],
    emit: Callable[[Event], None],
) -> str:
    """``name`` at ``previous`` again (the installer with the old version and the same flags) unless it is
    healthy there already, then uncordoned once Ready."""
    role = args[0]
    try:
        obj: dict[str, Any] | None = await request(api, "GET", f"/api/v1/nodes/{name}")
    except KubeError as exc:
        if exc.status not in TRANSIENT:
            raise
        obj = None  # no API: the server's new version does not start — the installer first
    healthy = (
        obj is not None
        and node_version(obj) == previous
        and is_ready(obj)
        and await service_state(config, config.node(name), role) == "active"
    )
    if not healthy:
        emit(Log("warning", f"{name}: back to {previous} (the installer with the old version)"))
        await install(config, name, args, env, previous)
        await until_ready(config, api, name, role, previous, emit)
    await answered(lambda: set_schedulable(api, name, True))
    return f"{name} back at {previous} and uncordoned"
