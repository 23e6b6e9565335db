"""SSH to the cluster's nodes by the operator's own aliases (OpenSSH client config), with asyncssh.

Why asyncssh reads the OpenSSH config rather than our own settings: the seed's operator already has
``k3s-mgr``, ``k3s-w1`` and ``k3s-w2`` in ``~/.ssh/config`` (HostName, Port, User, IdentityFile, known
hosts); the console reuses them as ``ssh k3s-mgr`` would.  Host keys are checked against the configured
known-hosts file: a console that operates production never skips that.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh

from console.config import SshConfig
from console.errors import OpsError


class SshError(OpsError):
    """An SSH failure, phrased for the operator (host alias and reason, never a key or password)."""


async def connect(alias: str, ssh: SshConfig) -> asyncssh.SSHClientConnection:
    path = ssh.config_path()
    options: dict[str, Any] = {"config": [str(path)] if path.exists() else []}
    try:
        return await asyncio.wait_for(asyncssh.connect(alias, **options), ssh.connect_timeout_s)
    except TimeoutError:
        raise SshError(f"ssh {alias}: no answer within {ssh.connect_timeout_s:g} s") from None
    except asyncssh.HostKeyNotVerifiable as exc:
        raise SshError(f"ssh {alias}: host key not verified ({exc.reason})") from None
    except asyncssh.PermissionDenied:
        raise SshError(f"ssh {alias}: permission denied") from None
    except (OSError, asyncssh.Error) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
        raise SshError(f"ssh {alias}: {reason}") from None


class Tunnel:
    """One SSH connection to a jump node and local port forwards through it, reconnected on demand.

    ``port_for(host, port)`` returns a loopback port that reaches ``host:port`` as seen from the node
    (a pod IP on the real cluster).  Forwards are kept while the connection lives.
    """

    def __init__(self, alias: str, ssh: SshConfig) -> None:
        self.alias = alias
        self.ssh = ssh
        self._conn: asyncssh.SSHClientConnection | None = None
        self._forwards: dict[tuple[str, int], asyncssh.SSHListener] = {}
        self._lock = asyncio.Lock()

    async def port_for(self, host: str, port: int) -> int:
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                await self._reset()
                self._conn = await connect(self.alias, self.ssh)
            listener = self._forwards.get((host, port))
            if listener is None:
                try:
                    listener = await self._conn.forward_local_port("127.0.0.1", 0, host, port)
                except (OSError, asyncssh.Error) as exc:
                    await self._reset()
                    raise SshError(f"ssh {self.alias}: cannot forward to {host}:{port}: {exc}") from None
                self._forwards[(host, port)] = listener
            return int(listener.get_port())

    async def _reset(self) -> None:
        for listener in self._forwards.values():
            listener.close()
        self._forwards.clear()
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
            self._conn = None

    async def broken(self) -> None:
        """Forget the connection (after a failure through it): the next call reconnects."""
        async with self._lock:
            await self._reset()

    async def close(self) -> None:
        await self.broken()
