"""The pooler pods' PgBouncer: Debian's ``pgbouncer``, one process per pooler pod, as CNPG's Pooler runs it.

Each process listens on its own loopback port (the pod IP's port in the data plane), pools in the Pooler's
``poolMode`` (transaction, as the seed's) and forwards every database to the current primary — what
CNPG's ``<cluster>-rw`` Service resolves to.  At a failover or switchover the twin rewrites the
``[databases]`` line and reloads (SIGHUP): PgBouncer closes server connections to the old host as they
are released, so the next transaction reaches the new primary.  The Pooler's ``spec.pgbouncer.paused`` is
PgBouncer's own ``PAUSE``/``RESUME`` on its admin console: PAUSE waits for the transactions in flight,
then new ones wait in PgBouncer (up to ``query_wait_timeout``) instead of failing.

Passwords: CNPG's PgBouncer looks users up with ``auth_query`` (a ``user_search`` function in each
database).  Debian's PgBouncer 1.18 has no ``auth_dbname``, so a function would be needed in every
database, restores included; instead the twin copies the SCRAM verifiers from ``pg_shadow`` into the
``auth_file`` when they change, which gives the same result (the pooler always accepts the current
password, and logs into PostgreSQL with the client's SCRAM keys).  The admin console's user is the lab's
own, with a random password in that file (mode 0600).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from lab.postgres import demote, free_port

log = logging.getLogger("lab.pgbouncer")
ADMIN = "lab_pgbouncer_admin"
BINARY = "/usr/sbin/pgbouncer"


def available() -> bool:
    return Path(BINARY).exists() or shutil.which("pgbouncer") is not None


@dataclass
class Bouncer:
    """One pooler pod's PgBouncer process."""

    name: str
    base: Path
    mode: str
    speed: float = 1.0  # the lab's timing factor (server_login_retry: PgBouncer's 15 s times it)
    port: int = field(default_factory=free_port)
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    proc: asyncio.subprocess.Process | None = None
    upstream: int = 0
    paused: bool = False  # what PgBouncer was last told (PAUSE/RESUME succeeded)
    want_paused: bool = False
    _admin_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def dir(self) -> Path:
        return self.base / f"pgbouncer-{self.name}"

    def _ini(self) -> str:
        return "\n".join(
            [
                "[databases]",
                f"* = host=127.0.0.1 port={self.upstream}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {self.port}",
                "unix_socket_dir =",
                "auth_type = scram-sha-256",
                f"auth_file = {self.dir / 'userlist.txt'}",
                f"pool_mode = {self.mode}",
                f"admin_users = {ADMIN}",
                "max_client_conn = 500",
                "default_pool_size = 20",
                "server_tls_sslmode = disable",
                "ignore_startup_parameters = extra_float_digits,options",
                "server_reset_query = DISCARD ALL",
                "query_wait_timeout = 120",
                "server_connect_timeout = 5",
                f"server_login_retry = {max(1, round(15 * self.speed))}",
                f"logfile = {self.dir / 'pgbouncer.log'}",
                f"pidfile = {self.dir / 'pgbouncer.pid'}",
                "",
            ]
        )

    def write_users(self, verifiers: dict[str, str]) -> None:
        lines = [f'"{ADMIN}" "{self.admin_password}"']
        lines += [f'"{user}" "{secret}"' for user, secret in sorted(verifiers.items())]
        fd = os.open(self.dir / "userlist.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:  # created 0600: the verifiers are never readable by others
            f.write("\n".join(lines) + "\n")

    def _own(self) -> None:
        user = _owner()
        if user is not None:
            for p in (self.dir, *self.dir.iterdir()):
                os.chown(p, *user)

    async def start(self, upstream: int, verifiers: dict[str, str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.upstream = upstream
        self.write_users(verifiers)
        (self.dir / "pgbouncer.ini").write_text(self._ini())
        (self.dir / "pgbouncer.log").touch()
        self._own()
        self.proc = await asyncio.create_subprocess_exec(
            BINARY,
            str(self.dir / "pgbouncer.ini"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=demote,
            start_new_session=True,
        )
        await self._until_listening()

    async def _until_listening(self, timeout: float = 10) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(OSError):
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            if self.proc is not None and self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise RuntimeError(f"pgbouncer {self.name} did not start: {self._log_tail()}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "pgbouncer.log").read_text()[-300:]
        return "no log"

    def reload(self) -> None:
        (self.dir / "pgbouncer.ini").write_text(self._ini())
        self._signal(signal.SIGHUP)

    def point_at(self, upstream: int) -> None:
        if upstream != self.upstream:
            self.upstream = upstream
            if self.proc is not None:  # not started yet: start() writes its first config
                self.reload()

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    async def admin(self, command: str, timeout: float = 30) -> None:
        """One admin-console command (PAUSE waits for the transactions in flight; RESUME)."""
        conn = await psycopg.AsyncConnection.connect(
            host="127.0.0.1",
            port=self.port,
            dbname="pgbouncer",
            user=ADMIN,
            password=self.admin_password,
            autocommit=True,
            connect_timeout=5,
            cursor_factory=psycopg.AsyncClientCursor,  # the admin console speaks the simple protocol only
        )
        async with conn:
            await asyncio.wait_for(conn.execute(command), timeout)

    async def set_paused(self, paused: bool) -> None:
        """PAUSE or RESUME, one at a time and always towards the newest wish (a RESUME sent while a PAUSE
        waits would leave PgBouncer paused)."""
        self.want_paused = paused
        async with self._admin_lock:
            while self.paused != self.want_paused:
                want = self.want_paused
                try:
                    await self.admin("PAUSE" if want else "RESUME")
                except (psycopg.Error, OSError, TimeoutError) as exc:
                    log.warning("pgbouncer %s: %s failed: %s", self.name, "PAUSE" if want else "RESUME", exc)
                    return
                self.paused = want

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _owner() -> tuple[int, int] | None:
    import pwd

    if os.geteuid() != 0:
        return None
    user = pwd.getpwnam("postgres")
    return user.pw_uid, user.pw_gid
