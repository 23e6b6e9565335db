"""Hetzner calls for the console's own steps: server power actions, and the client, request counter and
action follower the provisioning actions share.

``hcloud`` is synchronous: every call here runs in a thread.  An action is followed until it finishes
(``running`` -> ``success``/``error``), polling once a second, so a step's duration is the API's own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hcloud import APIException, Client

from console.config import Config
from console.errors import OpsError


class HetznerError(OpsError):
    """A refused or failed Hetzner call, phrased for the operator (code and message, never the token)."""


class RequestCounter:
    """Hetzner requests a client made, and the budget the project had left after the last one (a response
    hook on the library's HTTP session: every request counts, the library's own 429 retries included)."""

    def __init__(self) -> None:
        self.requests = 0
        self.remaining: int | None = None

    def hook(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        left = response.headers.get("RateLimit-Remaining")
        if left is not None and left.isdigit():
            self.remaining = int(left)
        return response


def client(config: Config, counter: RequestCounter | None = None) -> Client:
    hz = config.hetzner
    c = Client(token=hz.read_token(), api_endpoint=hz.endpoint, poll_interval=1.0)
    if counter is not None:
        c._client._session.hooks["response"].append(counter.hook)
    return c


def wait_action(action: Any, timeout: float, what: str = "") -> None:
    """Follow a Hetzner action until it finishes, polling after 0.25 s and then less often, up to once a
    second (a power action takes seconds: the first looks catch the quick ones, the cap keeps a long one
    to one request a second); HetznerError when it fails or outlasts ``timeout``.  ``what`` names it in
    the message (default: the action's command)."""
    what = what or f"Hetzner action {action.command}"
    deadline = time.monotonic() + timeout
    pause = 0.25
    while action.status == "running":
        if time.monotonic() > deadline:
            raise HetznerError(f"{what} still running after {timeout:g} s")
        time.sleep(pause)
        pause = min(1.0, pause * 1.5)
        action.reload()
    if action.status != "success":
        raise HetznerError(f"{what} failed: {action.error}")


def _server_action(config: Config, server_id: int, action: str, timeout_s: float) -> str:
    try:
        server = client(config).servers.get_by_id(server_id)
        if action == "poweron" and server.status == "running":
            return "already running"
        if action in ("poweroff", "shutdown") and server.status == "off":
            return "already off"
        method = {
            "poweron": server.power_on,
            "poweroff": server.power_off,
            "shutdown": server.shutdown,
            "reset": server.reset,  # the reset button: no clean shutdown
        }
        wait_action(method[action](), timeout_s, f"{action} of server {server_id}")
        return "done"
    except APIException as exc:
        raise HetznerError(
            f"Hetzner API refused {action} of server {server_id}: {exc.message} ({exc.code})"
        ) from None


async def server_action(config: Config, server_id: int, action: str, timeout_s: float = 120.0) -> str:
    """Run ``poweron``/``poweroff``/``shutdown``/``reset`` and wait for it: "done", "already …", or
    HetznerError."""
    return await asyncio.to_thread(_server_action, config, server_id, action, timeout_s)


def _server_status(config: Config, server_id: int) -> str:
    try:
        return str(client(config).servers.get_by_id(server_id).status)
    except APIException as exc:
        raise HetznerError(f"Hetzner API: {exc.message} ({exc.code})") from None


async def server_status(config: Config, server_id: int) -> str:
    return await asyncio.to_thread(_server_status, config, server_id)


def _server_id(config: Config, name: str) -> int:
    try:
        server = client(config).servers.get_by_name(name)
    except APIException as exc:
        raise HetznerError(f"Hetzner API: {exc.message} ({exc.code})") from None
    if server is None or server.id is None:
        raise HetznerError(f"no server named {name} in the Hetzner project")
    return int(server.id)


async def server_id(config: Config, name: str) -> int:
    """The server's ID by its name — config's ``hetzner_id`` is the seed's, and a provisioned or replaced
    server has a new one."""
    return await asyncio.to_thread(_server_id, config, name)
