"""The Storage Box: real Borg repositories ``./k3s-db`` and ``./k3s-cluster`` (repokey) behind the lab's SSH.

Clients reach them exactly as the real box: ``BORG_RSH="ssh -F DIR/ssh/config"`` and
``ssh://storagebox/./k3s-db`` (the box runs ``borg serve`` in the account's home).  ``DIR/borg.env`` holds
``BORG_RSH``, ``BORG_PASSPHRASE`` and the repository URLs.

History is seeded on the seed's schedule — the database every 6 hours, the cluster daily at 03:00 UTC —
as it stands after ``borg prune --keep-daily 7 --keep-weekly 4`` ran at today's 03:00 backup, plus every
backup taken since the day before (so a prune has something to remove).  Seeding runs in the background
after ``lab up`` returns; ``GET /storagebox`` on the control API says when it is done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lab.state import write_secret

log = logging.getLogger("lab.storagebox")
REPOS = ("k3s-db", "k3s-cluster")


def retained(times: list[datetime], daily: int, weekly: int) -> list[datetime]:
    """What ``borg prune --keep-daily D --keep-weekly W`` keeps (borg 1.2's prune_split, in UTC)."""
    kept: dict[datetime, str] = {}
    ordered = sorted(times, reverse=True)
    for rule, pattern, n in (("daily", "%Y-%m-%d", daily), ("weekly", "%G-%V", weekly)):
        last, count = None, 0
        for t in ordered:
            if count >= n:
                break
            period = t.strftime(pattern)
            if period != last:
                last = period
                if t not in kept:
                    kept[t] = rule
                    count += 1
    return sorted(kept)


def schedule(now: datetime, every_hours: int, at_hour: int, days: int) -> list[datetime]:
    start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    out, t = [], start
    while t <= now:
        if t.hour % every_hours == at_hour % every_hours:
            out.append(t)
        t += timedelta(hours=1)
    return out


def seeded_history(
    now: datetime, every_hours: int, at_hour: int, daily: int = 7, weekly: int = 4
) -> list[datetime]:
    """The archives a real box would hold now: the history as today's 03:00 prune left it, plus the backups
    taken since (a prune keeps the newest per day, so yesterday's earlier backups are gone)."""
    full = schedule(now, every_hours, at_hour, 40)
    last_prune = now.replace(hour=3, minute=0, second=0, microsecond=0)
    if last_prune > now:
        last_prune -= timedelta(days=1)
    before = [t for t in full if t <= last_prune]
    kept = set(retained(before, daily, weekly))
    recent = [t for t in full if t > last_prune]
    return sorted(kept | set(recent))


class StorageBox:
    def __init__(self, lab_dir: Path, account: str) -> None:
        self.lab_dir = lab_dir
        self.home = lab_dir / "storagebox" / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.account = account
        # The repositories outlive a lab restart in the same directory, so their passphrase does too.
        phrase_file = lab_dir / "secrets" / "borg-passphrase"
        if not phrase_file.exists():
            write_secret(lab_dir, "borg-passphrase", secrets.token_urlsafe(24))
        self.passphrase = phrase_file.read_text().strip()
        self.ready = False
        self.error: str | None = None
        self.locks: dict[str, asyncio.subprocess.Process] = {}
        self.seeded_times: dict[str, list[datetime]] = {}
        self.env = {
            "PATH": "/usr/bin:/bin",
            "BORG_PASSPHRASE": self.passphrase,
            "HOME": str(self.home),
            "BORG_BASE_DIR": str(lab_dir / "borg-base"),
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
            "LC_ALL": "C.UTF-8",
        }

    def repo(self, name: str) -> Path:
        return self.home / name

    def url(self, name: str) -> str:
        return f"ssh://storagebox/./{name}"

    def write_env(self, ssh_config: Path) -> Path:
        path = self.lab_dir / "borg.env"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(
                f"export BORG_RSH='ssh -F {ssh_config} -o BatchMode=yes'\n"
                f"export BORG_PASSPHRASE='{self.passphrase}'\n"
                f"export BORG_DB_REPO={self.url('k3s-db')}\n"
                f"export BORG_CLUSTER_REPO={self.url('k3s-cluster')}\n"
            )
        return path

    async def borg(self, *args: str, cwd: Path | None = None) -> str:
        proc = await asyncio.create_subprocess_exec(
            "borg",
            *args,
            env={**os.environ, **self.env},
            cwd=cwd or self.home,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"borg {args[0]}: {err.decode(errors='replace').strip()[-400:]}")
        return out.decode()

    async def init(self) -> None:
        """Repositories that went missing after seeding start empty; unseeded ones appear when seeded."""
        if not (self.lab_dir / "storagebox" / "seeded").exists():
            return
        for name in REPOS:
            if not (self.repo(name) / "config").exists():
                await self.borg("init", "--encryption=repokey", str(self.repo(name)))

    async def seed(self, db_files: Path, cluster_files: Path, now: datetime | None = None) -> None:
        """Create the seeded archives (local access to the repositories; clients use SSH)."""
        try:
            marker = self.lab_dir / "storagebox" / "seeded"
            if marker.exists():
                self.ready = True  # seeded by an earlier run of the lab in this directory
                self.seeded_times = {
                    k: [datetime.fromisoformat(t) for t in v]
                    for k, v in json.loads(marker.read_text()).items()
                }
                return
            now = now or datetime.now(UTC)
            # Seeded out of sight and moved into place when complete: a client never sees a repository
            # with half its history (whose newest archive would look days overdue).
            staging = self.home / ".seeding"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            for name in REPOS:
                await self.borg("init", "--encryption=repokey", str(staging / name))
            self.seeded_times = {
                "k3s-db": seeded_history(now, 6, 0),
                "k3s-cluster": seeded_history(now, 24, 3),
            }
            sources = {"k3s-db": db_files, "k3s-cluster": cluster_files}

            async def fill(repo: str) -> None:  # one repository's archives, oldest first
                prefix = "db" if repo == "k3s-db" else "cluster"
                for when in self.seeded_times[repo]:
                    stamp = when.strftime("%Y-%m-%dT%H:%M:%S")
                    target = f"{staging / repo}::{prefix}-{when.strftime('%Y-%m-%dT%H:%M')}"
                    await self.borg("create", "--timestamp", stamp, "--compression", "lz4", target, ".",
                                    cwd=sources[repo])  # fmt: skip

            # The two repositories are independent (a lock each): seeded side by side.
            await asyncio.gather(*(fill(repo) for repo in sources))
            plan = [t for times in self.seeded_times.values() for t in times]
            for name in REPOS:
                shutil.rmtree(self.repo(name), ignore_errors=True)
                os.rename(staging / name, self.repo(name))
            staging.rmdir()
            marker.write_text(
                json.dumps({k: [t.isoformat() for t in v] for k, v in self.seeded_times.items()})
            )
            self.ready = True
            log.info("storage box seeded: %d archives", len(plan))
        except Exception as exc:  # reported through the control API
            self.error = str(exc)
            log.exception("storage box seeding failed")

    async def lock(self, repo: str) -> None:
        """Hold the repository's lock (as a backup that hangs would), until :meth:`unlock`."""
        if repo in self.locks:
            return
        proc = await asyncio.create_subprocess_exec(
            "borg",
            "with-lock",
            str(self.repo(repo)),
            "sleep",
            "86400",
            env={**os.environ, **self.env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        self.locks[repo] = proc
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (self.repo(repo) / "lock.exclusive").exists():
            await asyncio.sleep(0.05)

    async def unlock(self, repo: str) -> None:
        proc = self.locks.pop(repo, None)
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            await proc.wait()

    async def miss(self, repo: str, hours: float) -> list[str]:
        """Delete the archives taken in the last ``hours``: as if those backups had never run.

        The repository is then overdue by the clock, exactly as a stopped CronJob would leave it; the
        archives are gone for real (``borg delete``), so every reader — the console, ``borg list`` — agrees.
        """
        listing = json.loads(await self.borg("list", "--json", str(self.repo(repo))))
        cutoff = datetime.now(UTC) - timedelta(hours=hours)
        names = [
            a["name"]
            for a in listing.get("archives", [])
            if datetime.fromisoformat(a["start"]).replace(tzinfo=UTC) > cutoff
        ]
        for name in names:
            await self.borg("delete", f"{self.repo(repo)}::{name}")
        return names

    async def add(self, repo: str, when: datetime, src: Path) -> str:
        """One archive of ``src`` as the cluster's scheduled job would write it at ``when``."""
        prefix = "db" if repo == "k3s-db" else "cluster"
        name = f"{prefix}-{when.strftime('%Y-%m-%dT%H:%M')}"
        await self.borg(
            "create", "--timestamp", when.strftime("%Y-%m-%dT%H:%M:%S"), "--compression", "lz4",
            f"{self.repo(repo)}::{name}", ".", cwd=src,
        )  # fmt: skip
        self.seeded_times.setdefault(repo, []).append(when)
        return name

    async def close(self) -> None:
        for repo in list(self.locks):
            await self.unlock(repo)

    def status(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "error": self.error,
            "locked": sorted(self.locks),
            "repositories": {n: self.url(n) for n in REPOS},
        }
