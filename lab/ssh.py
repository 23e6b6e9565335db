"""SSH into the lab: one asyncssh server per node and one for the Storage Box, on loopback ports.

* Host keys are generated per node and written to ``DIR/ssh/known_hosts`` under each host's alias;
  ``DIR/ssh/config`` is an OpenSSH client config (``Host k3s-mgr``, ``k3s-w1``, ``k3s-w2``, ``storagebox``)
  that pins them, so plain ``ssh -F DIR/ssh/config k3s-w1`` works with StrictHostKeyChecking.
* Public-key authentication only, with the lab's operator key, for ``root`` and ``deployer`` on nodes and
  the Storage Box account on ``storagebox``.
* Sessions run real commands through ``bash -c`` with the node's sandbox as ``HOME`` and working
  directory and the lab's programs (``k3s``, ``systemctl``, the K3s installer) first on ``PATH``.  There is
  no chroot: absolute paths are the host's (see lab/README.md).
* Direct TCP forwarding (``ssh -L``) resolves in-cluster names as the cluster would: Service DNS names
  (``main-db-rw.postgres.svc``), cluster IPs and pod IPs map to the loopback listeners behind them.
* A powered-off node's SSH listener is closed; the Storage Box can be made unreachable the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh

log = logging.getLogger("lab.ssh")
LOOPBACK = "127.0.0.1"
STORAGEBOX = "storagebox"

Resolver = Callable[[str, int], tuple[str, int] | None]


class _Forward(asyncssh.SSHTCPSession[bytes]):
    """One forwarded TCP connection, piped to a loopback listener."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.writer: asyncio.StreamWriter | None = None
        self.pending: list[bytes] = []
        self.chan: asyncssh.SSHTCPChannel[bytes] | None = None

    def connection_made(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        self.chan = chan
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        assert self.chan is not None
        try:
            reader, self.writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            self.chan.close()
            return
        for data in self.pending:
            self.writer.write(data)
        self.pending.clear()
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                self.chan.write(data)
        with contextlib.suppress(OSError):
            self.chan.close()

    def data_received(self, data: bytes, datatype: Any) -> None:
        if self.writer is None:
            self.pending.append(data)
        else:
            self.writer.write(data)

    def eof_received(self) -> bool:
        if self.writer is not None:
            with contextlib.suppress(OSError):
                self.writer.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.writer is not None:
            self.writer.close()


class _Server(asyncssh.SSHServer):
    def __init__(self, host: LabSshHost) -> None:
        self.host = host

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username in self.host.users and key.public_data == self.host.client_key.public_data

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> Any:
        target = self.host.resolve(dest_host, dest_port) if self.host.resolve else None
        if target is None:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_CONNECT_FAILED, f"{dest_host}:{dest_port}: no route"
            )
        return _Forward(*target)


class LabSshHost:
    """One SSH endpoint (a node or the Storage Box)."""

    def __init__(
        self,
        name: str,
        users: set[str],
        home: Path,
        key_dir: Path,
        client_key: asyncssh.SSHKey,
        env: dict[str, str],
        resolve: Resolver | None,
    ) -> None:
        self.name = name
        self.users = users
        self.home = home
        self.client_key = client_key
        self.env = env
        self.resolve = resolve
        self.port = 0
        self.server: asyncssh.SSHAcceptor | None = None
        # start/stop come from several tasks (start-up, power changes, faults): one at a time, or a
        # second listener could be created and orphaned while the first is still being set up.
        self.lock = asyncio.Lock()
        key_path = key_dir / f"{name}_host_ed25519"
        if not key_path.exists():
            asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(key_path))
            os.chmod(key_path, 0o600)
        self.host_key = asyncssh.read_private_key(str(key_path))
        home.mkdir(parents=True, exist_ok=True)

    async def _process(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command or "exec bash"
        env = {
            **self.env,
            "HOME": str(self.home),
            "USER": process.get_extra_info("username") or "root",
            "LAB_NODE": self.name,
        }
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command,
            cwd=self.home,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        await process.redirect(stdin=proc.stdin, stdout=proc.stdout, stderr=proc.stderr)
        code = await proc.wait()
        with contextlib.suppress(Exception):
            await process.stdout.drain()
        process.exit(code)

    async def start(self) -> None:
        async with self.lock:
            if self.server is not None:
                return
            self.server = await asyncssh.create_server(
                lambda: _Server(self),
                LOOPBACK,
                self.port,
                server_host_keys=[self.host_key],
                process_factory=self._process,
                encoding=None,
                allow_scp=True,
                reuse_address=True,
            )
            self.port = self.server.get_port()

    async def stop(self) -> None:
        async with self.lock:
            if self.server is not None:
                server, self.server = self.server, None
                server.close()


class LabSsh:
    """All SSH endpoints, the client config, and their lifecycle with the nodes' power."""

    def __init__(
        self,
        lab_dir: Path,
        nodes: list[str],
        storage_user: str,
        env: dict[str, str],
        resolve: Resolver,
        alive: Callable[[str], bool],
        forge_home: Path | None = None,
    ) -> None:
        self.lab_dir = lab_dir
        self.ssh_dir = lab_dir / "ssh"
        key_dir = self.ssh_dir / "hostkeys"
        key_dir.mkdir(parents=True, exist_ok=True)
        client_key = asyncssh.read_private_key(str(self.ssh_dir / "id_ed25519"))
        self.alive = alive
        self.nodes = set(nodes)
        self.storage_user = storage_user
        self.users: dict[str, str] = {STORAGEBOX: storage_user}  # login user per host (default root)
        self.hosts: dict[str, LabSshHost] = {}
        for node in nodes:
            self.hosts[node] = LabSshHost(
                node,
                {"root", "deployer"},
                lab_dir / "nodes" / node / "root",
                key_dir,
                client_key,
                env,
                resolve,
            )
        self.hosts[STORAGEBOX] = LabSshHost(
            STORAGEBOX,
            {storage_user},
            lab_dir / "storagebox" / "home",
            key_dir,
            client_key,
            {"PATH": "/usr/bin:/bin"},
            None,
        )
        self.storagebox_up = True
        if forge_home is not None:
            from lab.forge import FORGE_HOST, FORGE_USER

            self.users[FORGE_HOST] = FORGE_USER
            self.hosts[FORGE_HOST] = LabSshHost(
                FORGE_HOST, {FORGE_USER}, forge_home, key_dir, client_key, env, None
            )

    async def start(self) -> dict[str, int]:
        for host in self.hosts.values():
            await host.start()
        self.write_client_files()
        return {name: h.port for name, h in self.hosts.items()}

    def write_client_files(self) -> None:
        lines, known = [], []
        for name, host in self.hosts.items():
            user = self.users.get(name, "root")
            lines += [
                f"Host {name}",
                f"  HostName {LOOPBACK}",
                f"  Port {host.port}",
                f"  User {user}",
                f"  IdentityFile {self.ssh_dir / 'id_ed25519'}",
                "  IdentitiesOnly yes",
                f"  UserKnownHostsFile {self.ssh_dir / 'known_hosts'}",
                "  StrictHostKeyChecking yes",
                f"  HostKeyAlias {name}",
                "  BatchMode yes",
                "  LogLevel ERROR",
                "",
            ]
            known.append(f"{name} {host.host_key.export_public_key().decode().strip()}")
        (self.ssh_dir / "config").write_text("\n".join(lines))
        (self.ssh_dir / "known_hosts").write_text("\n".join(known) + "\n")

    async def sync(self) -> None:
        """Listeners follow power: a node that is off (or an unreachable Storage Box) does not listen."""
        for name, host in self.hosts.items():
            want = self.storagebox_up if name == STORAGEBOX else name not in self.nodes or self.alive(name)
            if want and host.server is None:
                await host.start()
            elif not want and host.server is not None:
                await host.stop()

    async def close(self) -> None:
        for host in self.hosts.values():
            await host.stop()


def in_cluster_resolver(store: Any, cluster: Any, dataplane: Any) -> Resolver:
    """Map an in-cluster address (Service DNS name, cluster IP, pod IP) to the loopback listener behind it."""
    svc_res, ep_res = cluster.res["services"], cluster.res["endpoints"]

    def endpoint_port(namespace: str, service: str) -> tuple[str, int] | None:
        ep = store.find(ep_res, namespace, service)
        for subset in (ep or {}).get("subsets", []):
            for addr in subset.get("addresses", []):
                port = dataplane.ip_ports.get(addr["ip"])
                if port:
                    return LOOPBACK, port
        return None

    def resolve(host: str, port: int) -> tuple[str, int] | None:
        host = host.rstrip(".")
        for suffix in (".svc.cluster.local", ".svc"):
            if host.endswith(suffix):
                host = host[: -len(suffix)]
                break
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            parts = host.split(".")
            if len(parts) == 2:
                return endpoint_port(parts[1], parts[0])
            return None
        if str(ip) in dataplane.ip_ports:
            return LOOPBACK, dataplane.ip_ports[str(ip)]
        for svc in store.list(svc_res):
            if svc["spec"].get("clusterIP") == str(ip):
                return endpoint_port(svc["metadata"]["namespace"], svc["metadata"]["name"])
        return None

    return resolve
