"""Real PostgreSQL servers for the CNPG twin: initdb, streaming replicas, promote, pg_rewind, stop/start.

PostgreSQL refuses to run as root, so when the lab runs as root every server runs as the ``postgres``
system user (created by Debian's postgresql package) with its data under a private runtime directory
that user can reach (``/tmp/opsconsole-lab-pg-*``, removed by ``lab down``); otherwise as the current
user under the lab directory.  Servers listen on 127.0.0.1 only, on ports chosen at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from lab.state import PG_BIN_ENV

log = logging.getLogger("lab.postgres")
PG_BIN = Path(os.environ.get(PG_BIN_ENV) or "/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    return pwd.getpwnam("postgres") if os.geteuid() == 0 else None


def runtime_dir(lab_dir: Path) -> Path:
    user = _run_as()
    if user is None:
        path = lab_dir / "pg"
        path.mkdir(parents=True, exist_ok=True)
        return path
    path = Path(tempfile.mkdtemp(prefix="opsconsole-lab-pg-"))
    os.chown(path, user.pw_uid, user.pw_gid)
    (lab_dir / "pg-runtime").write_text(str(path))
    return path


def cleanup_runtime(lab_dir: Path) -> None:
    """Kill any server left in the lab's runtime directory (a daemon that died hard) and remove it.

    PostgreSQL daemonises into its own session, so stopping the lab's process group does not reach it."""
    marker = lab_dir / "pg-runtime"
    base = Path(marker.read_text().strip()) if marker.exists() else lab_dir / "pg"
    for pidfile in [*base.glob("*/postmaster.pid"), *base.glob("pgbouncer-*/pgbouncer.pid")]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pidfile.read_text().splitlines()[0]), 9)
    if marker.exists():
        shutil.rmtree(base, ignore_errors=True)
        marker.unlink()


_RUN_AS = _run_as()  # looked up here, in the parent: a forked child must not call into NSS


def demote() -> None:
    """In a child before exec: become the OS user the lab runs PostgreSQL as (when started as root), with
    no supplementary groups of root's."""
    if _RUN_AS is not None:
        os.setgroups([])
        os.setgid(_RUN_AS.pw_gid)
        os.setuid(_RUN_AS.pw_uid)


async def run(
    *cmd: str, check: bool = True, timeout: float = 120, password: str | None = None
) -> tuple[int, str]:
    env = {"PATH": f"{PG_BIN}:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/tmp"}
    if password is not None:
        env["PGPASSWORD"] = password  # never on a command line
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=demote,
        env=env,
        start_new_session=False,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode(errors="replace")
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed ({proc.returncode}): {text.strip()[-500:]}")
    return proc.returncode or 0, text


async def ensure_slot(primary: PgInstance, slot: str) -> None:
    """The physical replication slot a replica streams through (CNPG names them ``_cnpg_<instance>``)."""
    async with await psycopg.AsyncConnection.connect(primary.dsn(), autocommit=True) as conn:
        await conn.execute(
            "SELECT pg_create_physical_replication_slot(%s) WHERE NOT EXISTS "
            "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)",
            (slot, slot),
        )


@dataclass
class PgInstance:
    """One instance (a CNPG pod's PostgreSQL): its data directory, port and role."""

    name: str
    base: Path
    port: int = field(default_factory=free_port)
    superuser_password: str = ""

    @property
    def datadir(self) -> Path:
        return self.base / self.name

    @property
    def socket_dir(self) -> Path:
        return self.base / f"{self.name}-sock"

    def dsn(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        pw = self.superuser_password if password is None and user == "postgres" else (password or "")
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user} password={pw} connect_timeout=2"

    def _conf(self) -> str:
        return "\n".join(
            [
                f"port = {self.port}",
                "listen_addresses = '127.0.0.1'",
                f"unix_socket_directories = '{self.socket_dir}'",
                "wal_level = replica",
                "max_wal_senders = 10",
                "max_replication_slots = 10",
                "hot_standby = on",
                "wal_log_hints = on",
                "wal_keep_size = '256MB'",
                "shared_buffers = '32MB'",
                "fsync = off",
                "synchronous_commit = off",
                "full_page_writes = on",
                "logging_collector = off",
                f"cluster_name = '{self.name}'",
                "password_encryption = 'scram-sha-256'",
                "max_connections = 60",
                # Where a replica's primary_conninfo lives: ALTER SYSTEM (auto.conf) overrides it,
                # and RESET restores it.
                "include_if_exists = 'lab-follow.conf'",
                "",
            ]
        )

    def _hba(self) -> str:
        return (
            "local all all trust\n"
            "host replication streaming_replica 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )

    def _write_config(self) -> None:
        (self.datadir / "postgresql.auto.conf").touch()
        conf = self.datadir / "postgresql.conf"
        text = conf.read_text() if conf.exists() else ""
        marker = "# --- opsconsole lab ---\n"
        text = text.split(marker)[0] + marker + self._conf()
        conf.write_text(text)
        (self.datadir / "pg_hba.conf").write_text(self._hba())

    def _prepare_dirs(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        user = _run_as()
        if user is not None:
            for path in (self.socket_dir, self.datadir):
                if path.exists():
                    for root, dirs, files in os.walk(path):
                        os.chown(root, user.pw_uid, user.pw_gid)
                        for name in dirs + files:
                            with contextlib.suppress(FileNotFoundError):
                                os.chown(
                                    os.path.join(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False
                                )

    async def initdb(self) -> None:
        self._prepare_dirs()
        await run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        self._write_config()
        self._prepare_dirs()

    async def basebackup_from(self, primary: PgInstance, slot: str) -> None:
        """A streaming replica of ``primary`` (``pg_basebackup -R``, with a physical replication slot)."""
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_dirs()
        await ensure_slot(primary, slot)
        await run(
            str(PG_BIN / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "streaming_replica",
            "-D",
            str(self.datadir),
            "-R",
            "-S",
            slot,
            "-X",
            "stream",
            "--no-sync",
            "--checkpoint=fast",
        )
        self._write_config()
        self._follow_conf(primary, slot)
        self._prepare_dirs()

    def _follow_conf(self, primary: PgInstance, slot: str) -> None:
        auto = self.datadir / "postgresql.auto.conf"
        lines = [
            ln
            for ln in auto.read_text().splitlines()
            if not ln.startswith(("primary_conninfo", "primary_slot_name", "recovery_target_timeline"))
        ]
        auto.write_text("\n".join(lines) + "\n")
        (self.datadir / "lab-follow.conf").write_text(
            f"primary_conninfo = 'host=127.0.0.1 port={primary.port} user=streaming_replica "
            f"application_name={self.name}'\nprimary_slot_name = '{slot}'\n"
            "recovery_target_timeline = 'latest'\n"
        )
        (self.datadir / "standby.signal").touch()

    async def follow(self, primary: PgInstance, slot: str) -> None:
        """Start as a streaming replica of ``primary`` (no rewind: this instance never got ahead of it)."""
        await ensure_slot(primary, slot)
        self._follow_conf(primary, slot)
        self._prepare_dirs()
        await self.start()

    async def start(self) -> None:
        self._prepare_dirs()
        await run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.base / f"{self.name}.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    async def stop(self, mode: str = "fast") -> None:
        code, _ = await run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "-t", "30", "stop", check=False
        )
        if code not in (0, 3):
            log.warning("pg_ctl stop %s returned %s", self.name, code)

    async def running(self) -> bool:
        code, _ = await run(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "status", check=False)
        return code == 0

    async def rewind_and_follow(self, primary: PgInstance, slot: str) -> None:
        """Rejoin as a replica of the new primary: pg_rewind to its timeline, then stream from it."""
        await ensure_slot(primary, slot)
        async with await psycopg.AsyncConnection.connect(primary.dsn(), autocommit=True) as conn:
            # pg_rewind reads the source's timeline from its control file, which a freshly promoted
            # server updates only at its next checkpoint (as the pg_rewind documentation warns).
            await conn.execute("CHECKPOINT")
        self._prepare_dirs()
        _, out = await run(
            str(PG_BIN / "pg_rewind"),
            "--target-pgdata",
            str(self.datadir),
            "--source-server",
            f"host=127.0.0.1 port={primary.port} user=postgres dbname=postgres",
            "--no-sync",
            timeout=180,
            password=primary.superuser_password,
        )
        log.info(
            "pg_rewind %s from %s: %s", self.name, primary.name, " | ".join(out.strip().splitlines()[-4:])
        )
        self._write_config()
        self._follow_conf(primary, slot)
        self._prepare_dirs()
        await self.start()
