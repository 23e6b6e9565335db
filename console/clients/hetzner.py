"""Hetzner server actions for the console's own steps (power off, shut down, power on).

``hcloud`` is synchronous: every call here runs in a thread.  An action is followed until it finishes
(``running`` -> ``success``/``error``), polling once a second, so a step's duration is the API's own.
"""

from __future__ import annotations

import asyncio
import time

from hcloud import APIException, Client

from console.config import Config


class HetznerError(Exception):
    """A refused or failed Hetzner call, phrased for the operator (code and message, never the token)."""


def _client(config: Config) -> Client:
    hz = config.hetzner
    return Client(token=hz.read_token(), api_endpoint=hz.endpoint, poll_interval=1.0)


def _server_action(config: Config, server_id: int, action: str, timeout_s: float) -> str:
    client = _client(config)
    try:
        server = client.servers.get_by_id(server_id)
        if action == "poweron" and server.status == "running":
            return "already running"
        if action in ("poweroff", "shutdown") and server.status == "off":
            return "already off"
        method = {"poweron": server.power_on, "poweroff": server.power_off, "shutdown": server.shutdown}
        act = method[action]()
        deadline = time.monotonic() + timeout_s
        while act.status == "running":
            if time.monotonic() > deadline:
                raise HetznerError(f"{action} of server {server_id} still running after {timeout_s:g} s")
            time.sleep(1.0)
            act = client.actions.get_by_id(act.id)
        if act.status != "success":
            raise HetznerError(f"{action} of server {server_id} failed: {act.error}")
        return "done"
    except APIException as exc:
        raise HetznerError(
            f"Hetzner API refused {action} of server {server_id}: {exc.message} ({exc.code})"
        ) from None


async def server_action(config: Config, server_id: int, action: str, timeout_s: float = 120.0) -> str:
    """Run ``poweron``/``poweroff``/``shutdown`` and wait for it; "done", "already …", or HetznerError."""
    return await asyncio.to_thread(_server_action, config, server_id, action, timeout_s)


def _server_status(config: Config, server_id: int) -> str:
    try:
        return str(_client(config).servers.get_by_id(server_id).status)
    except APIException as exc:
        raise HetznerError(f"Hetzner API: {exc.message} ({exc.code})") from None


async def server_status(config: Config, server_id: int) -> str:
    return await asyncio.to_thread(_server_status, config, server_id)


def _server_id(config: Config, name: str) -> int:
    try:
        server = _client(config).servers.get_by_name(name)
    except APIException as exc:
        raise HetznerError(f"Hetzner API: {exc.message} ({exc.code})") from None
    if server is None or server.id is None:
        raise HetznerError(f"no server named {name} in the Hetzner project")
    return int(server.id)


async def server_id(config: Config, name: str) -> int:
    """The server's ID by its name — config's ``hetzner_id`` is the seed's, and a provisioned or replaced
    server has a new one."""
    return await asyncio.to_thread(_server_id, config, name)
