"""Backup freshness from the Storage Box itself: ``borg list --json`` per repository, over SSH.

CNPG's ``lastSuccessfulBackup`` says nothing about the seed's backups (a CronJob running ``pg_dump`` into
Borg, and a daily cluster archive); only the repositories know.  Every ``backups.poll_interval_s`` this
source lists each repository's archives and judges:

* freshness — the newest archive's age against ``max_age_hours`` (overdue past it);
* retention — what ``borg prune --keep-daily D --keep-weekly W`` keeps is at most D + W archives, plus
  those taken since the last prune (one schedule period); more means prune is not running, and fewer
  daily archives than the repository is old means backups were missed.

Only archive names and times are read (``borg list``), never contents: it needs the repository key, so
the passphrase reaches the borg process, but no data leaves the Storage Box.

Answers are cached in the state directory (``borg-cache.json``, archive names and times only) for one
poll interval: ``borg list`` runs two Python processes and takes the repository's lock, so a
cron job running ``--action status`` every minute and an open dashboard share one look per interval
instead of each hammering the Storage Box.  The panel shows the answer's real age.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from console.clients.borg import BorgError, borg_env, borg_json
from console.config import BorgRepository, Config
from console.model import BackupRepo, SourceState
from console.paths import state_home
from console.sources.base import PollingSource
from console.store import ClusterStore


def _cache_path() -> Any:
    return state_home() / "borg-cache.json"


def _read_cache() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(_cache_path().read_text())
        return data
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict[str, Any]) -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(path)
    except OSError:
        pass  # a cache that cannot be written only costs the next look a borg call


def _parse(ts: str) -> datetime:
    """Borg's archive ``start``: ISO without zone; borg ≥ 1.2 reports local time of the client."""
    dt = datetime.fromisoformat(ts)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def judge(repo: BorgRepository, archives: list[dict[str, Any]], now: datetime) -> BackupRepo:
    # Only the schedule's own archives count: not a safety archive taken before a restore, not an
    # interrupted create's ".checkpoint".
    prefix = "db-" if repo.what == "db" else "cluster-"
    archives = [a for a in archives if a["name"].startswith(prefix) and not a["name"].endswith(".checkpoint")]
    times = sorted((_parse(a.get("start") or a["time"]), a["name"]) for a in archives)
    if not times:
        return BackupRepo(
            repo.name,
            repo.what,
            repo.schedule,
            repo.max_age_hours,
            0,
            None,
            None,
            None,
            True,
            False,
            "no archives",
        )
    latest_at, latest = times[-1]
    age_h = (now - latest_at).total_seconds() / 3600
    per_day = max(1, round(24 / repo.max_age_hours)) if repo.max_age_hours < 24 else 1
    allowed = repo.keep_daily + repo.keep_weekly + per_day
    days_covered = {t.date() for t, _ in times if now - t < timedelta(days=repo.keep_daily)}
    span_days = min(repo.keep_daily, (now.date() - times[0][0].date()).days + 1)
    notes = []
    if len(times) > allowed:
        notes.append(f"{len(times)} archives (prune keeps ≤ {allowed})")
    if len(days_covered) < span_days:
        notes.append(f"archives on {len(days_covered)} of the last {span_days} days")
    retention = "; ".join(notes) or f"{len(times)} kept ({repo.keep_daily} daily + {repo.keep_weekly} weekly)"
    return BackupRepo(
        repo.name,
        repo.what,
        repo.schedule,
        repo.max_age_hours,
        len(times),
        latest,
        latest_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        round(age_h, 2),
        age_h > repo.max_age_hours,
        not notes,
        retention,
    )


RETRY_S = 10.0


def _with_receipts(repo: BackupRepo) -> BackupRepo:
    """The repository with the console's own last `borg check` and (db) verify-restore receipt."""
    import dataclasses
    import json

    from console.paths import state_home

    checked = verified = None
    verified_at: float | None = None
    try:
        check = json.loads((state_home() / "backup-check.json").read_text())
        result = check["results"].get(repo.name)
        if result:
            checked = f"{result} {datetime.fromtimestamp(check['at'], UTC):%Y-%m-%d %H:%M}"
    except (OSError, ValueError, KeyError):
        pass
    if repo.what == "db":
        receipts = sorted((state_home() / "receipts").glob("verify-*.json"))
        if receipts:
            try:
                r = json.loads(receipts[-1].read_text())
                verified = (
                    f"{'ok' if r['ok'] else 'FAILED'} {datetime.fromtimestamp(r['at'], UTC):%Y-%m-%d %H:%M}, "
                    f"RTO {r['rto_s']} s, RPO {r['rpo_s'] / 3600:.1f} h"
                )
            except (OSError, ValueError, KeyError):
                pass
        verified_at = _newest_ok(receipts)
    return dataclasses.replace(repo, checked=checked, verified=verified, verified_at=verified_at)


def _newest_ok(receipts: list[Path]) -> float | None:
    """When the newest verify-restore that succeeded ran (a failed one proves nothing)."""
    for path in reversed(receipts):
        try:
            r = json.loads(path.read_text())
            if r["ok"]:
                return float(r["at"])
        except (OSError, ValueError, KeyError):
            continue
    return None


class BorgSource(PollingSource):
    """``borg list`` per repository, every ``backups.poll_interval_s``; the first look may reuse a recent
    answer from the state directory's cache (a dashboard opened twice in a minute asks once); a failed
    look is retried sooner, backing off to the interval."""

    name = "borg"

    def __init__(self, store: ClusterStore, config: Config) -> None:
        super().__init__(store, config)
        self.use_cache = True
        self.retry = RETRY_S

    def interval(self) -> float:
        every = self.config.backups.poll_interval_s
        failed = any(b.error for b in self.store.extra.get("backups") or ())
        wait = min(self.retry, every) if failed else every
        self.retry = self.retry * 2 if failed else RETRY_S
        return wait

    async def poll(self) -> None:
        use_cache, self.use_cache = self.use_cache and not self._wake.is_set(), False
        await self.look(use_cache)

    async def look(self, use_cache: bool = True) -> None:
        b = self.config.backups
        env = borg_env(b, self.config.ssh)
        now = datetime.now(UTC)
        errors = []
        cache = _read_cache()
        taken: list[float] = []

        async def one(repo: BorgRepository) -> BackupRepo:
            url = b.repo_url(repo)
            key = f"{self.config.ssh.config_path()} {url}"  # one alias may name different boxes
            hit = cache.get(key)
            if use_cache and hit and time.time() - hit["at"] < b.poll_interval_s:
                taken.append(hit["at"])
                return judge(repo, hit["archives"], now)
            try:
                data = await borg_json(["list", "--json", url], env)
                archives = [
                    {"name": a["name"], "start": a.get("start") or a["time"]} for a in data["archives"]
                ]
                cache[key] = {"at": time.time(), "archives": archives}
                taken.append(time.time())
                return judge(repo, archives, now)
            except BorgError as exc:
                errors.append(f"{repo.name}: {exc}")
                return BackupRepo(
                    repo.name, repo.what, repo.schedule, repo.max_age_hours, None, None, None, None,
                    False, None, "", str(exc),
                )  # fmt: skip

        # Each repository has its own lock on the Storage Box: list them at once.
        results = [_with_receipts(r) for r in await asyncio.gather(*(one(r) for r in b.repositories))]
        _write_cache(cache)
        prev = self.store.extra.get("backups") or ()
        if errors and len(errors) == len(b.repositories):
            # Keep the last good answer on screen (marked stale) rather than blanking the panel.
            if not prev:
                self.store.set_extra("backups", tuple(results))
            self.store.set_source(self.name, SourceState.UNREACHABLE, errors[0])
            return
        self.store.set_extra("backups", tuple(results))
        self.store.set_source(self.name, SourceState.OK, None, at=min(taken) if taken else None)
