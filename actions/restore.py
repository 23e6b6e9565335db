"""Prove and use the backups: verify-restore, restore a database, restore the cluster.

* **Verify restore** (none of borgmatic, Velero or CNPG does this): the latest ``k3s-db`` archive's dump
  is restored into a scratch database on the cluster's primary, its per-table row counts compared with the
  ``meta.json`` taken at dump time, the backup's sentinel row looked for; the scratch database is dropped
  and a receipt (RTO: how long the restore took; RPO: how old the data is) saved in the state directory.
* **Restore database**: into ``docfast_staging`` by default.  Into a production database only after a
  safety archive of its current state and an explicit confirmation (``--i-mean-production`` headless,
  the database's name typed in the TUI).
* **Restore cluster**: K3s's procedure over SSH on the server — ``systemctl stop k3s``,
  ``k3s server --cluster-reset --cluster-reset-restore-path=FILE``, ``systemctl start k3s`` — with the etcd
  snapshot from the archive copied to the node first; every step timed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actions.backup import SENTINEL_TABLE, _private_dir, archive_name, repo, stream_dumps
from console.clients.borg import BorgError, borg_env
from console.clients.borg_run import borg_run
from console.clients.pgtools import Primary
from console.clients.ssh import connect
from console.config import Config
from console.events import Event, Finished, StepFinished, StepStarted
from console.paths import state_home
from console.runner import ActionSession


async def _latest(config: Config, what: str, env: dict[str, str], archive: str) -> tuple[str, str]:
    """(archive name, start time) of ``archive`` or, for ``latest``, the newest complete one."""
    r = repo(config, what)
    prefix = "db" if what == "db" else "cluster"
    res = await borg_run(["list", "--json", f"--glob-archives={prefix}-*", config.backups.repo_url(r)], env)
    archives = [a for a in res.json().get("archives", []) if not a["name"].endswith(".checkpoint")]
    if not archives:
        raise BorgError(f"{r.name}: no archives")
    if archive != "latest":
        match = next((a for a in archives if a["name"] == archive), None)
        if match is None:
            raise BorgError(f"{r.name}: no archive {archive!r}")
        return match["name"], match.get("start") or match["time"]
    newest = max(archives, key=lambda a: a.get("start") or a["time"])
    return newest["name"], newest.get("start") or newest["time"]


async def _extract(
    config: Config, what: str, name: str, env: dict[str, str], paths: list[str], into: Path
) -> None:
    r = repo(config, what)
    await borg_run(["extract", "--log-json", f"{config.backups.repo_url(r)}::{name}", *paths], env, cwd=into)


def receipts_dir() -> Path:
    return state_home() / "receipts"


async def run_verify_restore(config: Config, emit: Callable[[Event], None]) -> int:
    env = borg_env(config.backups, config.ssh)
    async with ActionSession(config, "verify-restore", {}, emit) as s:
        primary = Primary(config, s.api)
        work = _private_dir("verify-")
        scratch = f"opsconsole_verify_{int(time.time())}"
        try:
            t0 = time.time()
            name, taken = await _latest(config, "db", env, "latest")
            dbname = config.database.databases[0]
            emit(StepStarted("extract", f"borg extract {name}: {dbname}.dump, meta.json"))
            await _extract(config, "db", name, env, [f"{dbname}.dump", "meta.json"], work)
            meta = json.loads((work / "meta.json").read_text()) if (work / "meta.json").exists() else {}
            emit(StepFinished("extract", True, f"{(work / f'{dbname}.dump').stat().st_size} bytes"))
            emit(StepStarted("restore", f"pg_restore into scratch database {scratch}"))
            s.step("scratch", "created", {"database": scratch})
            await primary.recreate(scratch, config.database.app_user)
            await primary.restore(scratch, work / f"{dbname}.dump", config.database.app_user)
            rto = time.time() - t0
            emit(StepFinished("restore", True, f"restored in {rto:.1f} s"))
            emit(StepStarted("compare", "row counts and the sentinel"))
            counts = await primary.row_counts(scratch)
            expected = (meta.get("databases") or {}).get(dbname, {}).get("row_counts") or {}
            mismatched = {t: (n, counts.get(t)) for t, n in expected.items() if counts.get(t) != n}
            sentinel = meta.get("sentinel")
            found = bool(
                sentinel
                and await primary.sql(
                    scratch, f"SELECT 1 FROM {SENTINEL_TABLE} WHERE token = %s", (sentinel,)
                )
            )
            ok = bool(expected) and not mismatched and found
            emit(
                StepFinished(
                    "compare",
                    ok,
                    f"{len(expected) - len(mismatched)}/{len(expected)} tables match"
                    + ("; sentinel found" if found else "; sentinel NOT found"),
                )
            )
        finally:
            await primary.drop(scratch)
            await primary.close()
            shutil.rmtree(work, ignore_errors=True)
        taken_at = (
            datetime.fromisoformat(taken).replace(tzinfo=UTC)
            if "+" not in taken
            else datetime.fromisoformat(taken)
        )
        receipt: dict[str, Any] = {
            "at": time.time(),
            "archive": name,
            "database": dbname,
            "ok": ok,
            "rto_s": round(rto, 2),
            "rpo_s": round(time.time() - taken_at.timestamp(), 1),
            "tables": len(expected),
            "rows": sum(counts.values()),
            "mismatched": mismatched,
            "sentinel_found": found,
            "primary_at_dump": meta.get("primary"),
        }
        receipts_dir().mkdir(parents=True, exist_ok=True)
        path = receipts_dir() / f"verify-{time.strftime('%Y%m%dT%H%M%S')}.json"
        path.write_text(json.dumps(receipt, indent=2))
        s.result = {"ok": ok, "receipt": str(path)}
        summary = (
            f"{name}: {'verified' if ok else 'FAILED'} — {receipt['tables']} tables, {receipt['rows']} rows, "
            f"RTO {receipt['rto_s']} s, RPO {receipt['rpo_s'] / 3600:.1f} h"
        )
        emit(Finished("PASS" if ok else "FAIL", 0 if ok else 1, summary, receipt, str(path)))
        return 0 if ok else 1


async def run_restore_db(
    config: Config,
    emit: Callable[[Event], None],
    db: str,
    archive: str,
    into: str | None,
    yes: bool,
    production_ok: bool,
) -> int:
    target = into or config.database.databases[-1]
    production = target == config.database.databases[0]
    if db not in config.database.databases:
        emit(Finished("REFUSED", 2, f"--db {db!r} is not one of {', '.join(config.database.databases)}"))
        return 2
    if not yes or (production and not production_ok):
        why = (
            f"restoring into the production database {target} replaces its data: "
            "add --yes --i-mean-production"
            if production
            else f"restoring into {target} replaces its data: add --yes"
        )
        emit(Finished("REFUSED", 2, why))
        return 2
    env = borg_env(config.backups, config.ssh)
    async with ActionSession(config, "restore", {"db": db, "archive": archive, "into": target}, emit) as s:
        primary = Primary(config, s.api)
        work = _private_dir("restore-")
        try:
            t0 = time.time()
            name, _ = await _latest(config, "db", env, archive)
            if production:
                emit(StepStarted("safety", f"safety archive of {target} before it is replaced"))
                safety = archive_name(f"safety-{target}")
                async with primary.snapshot(target) as (snap, _):  # streamed, as every dump (backup.py)
                    os.mkfifo(work / f"{target}.dump", 0o600)
                    await stream_dumps(
                        config,
                        repo(config, "db"),
                        safety,
                        [f"{target}.dump"],
                        work,
                        emit,
                        primary,
                        {target: snap},
                    )
                s.step("safety", "done", {"archive": safety})
                emit(StepFinished("safety", True, f"{safety} stored"))
            emit(StepStarted("extract", f"borg extract {name}: {db}.dump"))
            await _extract(config, "db", name, env, [f"{db}.dump"], work)
            emit(StepFinished("extract", True, f"{(work / f'{db}.dump').stat().st_size} bytes"))
            emit(StepStarted("restore", f"{db} from {name} into {target}"))
            s.step("restore", "started", {"into": target})
            await primary.recreate(target, config.database.app_user)
            await primary.restore(target, work / f"{db}.dump", config.database.app_user)
            counts = await primary.row_counts(target)
            took = time.time() - t0
            emit(
                StepFinished(
                    "restore", True, f"{len(counts)} tables, {sum(counts.values())} rows in {took:.1f} s"
                )
            )
            s.result = {"archive": name, "into": target, "seconds": round(took, 1)}
            emit(
                Finished(
                    "DONE",
                    0,
                    f"{db} from {name} restored into {target} in {took:.1f} s",
                    {"row_counts": counts},
                )
            )
            return 0
        finally:
            await primary.close()
            shutil.rmtree(work, ignore_errors=True)


async def run_restore_cluster(config: Config, emit: Callable[[Event], None], archive: str, yes: bool) -> int:
    if not yes:
        emit(Finished("REFUSED", 2, "restoring the cluster resets Kubernetes to the snapshot: add --yes"))
        return 2
    env = borg_env(config.backups, config.ssh)
    server = next(n for n in config.nodes if n.role == "server")
    async with ActionSession(config, "restore-cluster", {"archive": archive}, emit) as s:
        work = _private_dir("restore-cluster-")
        timings: dict[str, float] = {}
        try:
            t = time.time()
            name, _ = await _latest(config, "cluster", env, archive)
            await _extract(config, "cluster", name, env, ["etcd-snapshot"], work)
            timings["extract"] = time.time() - t
            emit(StepFinished("extract", True, f"etcd snapshot from {name}"))
            conn = await connect(server.ssh_host, config.ssh)
            async with conn:
                remote = f"opsconsole-restore-{int(time.time())}"
                for step, command, data in (
                    ("upload", f"cat > {remote}", (work / "etcd-snapshot").read_bytes()),
                    ("stop", "systemctl stop k3s", None),
                    (
                        "reset",
                        "k3s server --cluster-reset "
                        f'--cluster-reset-restore-path="$PWD/{shlex.quote(remote)}"',
                        None,
                    ),
                    ("start", "systemctl start k3s", None),
                ):
                    emit(StepStarted(step, f"{server.name}: {command}"))
                    t = time.time()
                    res = await conn.run(command, input=data, encoding=None if data else "utf-8", check=False)
                    timings[step] = time.time() - t
                    if res.exit_status != 0:
                        if step in ("reset",):
                            await conn.run("systemctl start k3s", check=False)  # never leave it stopped
                        err = (
                            res.stderr.decode(errors="replace")
                            if isinstance(res.stderr, bytes)
                            else str(res.stderr)
                        )
                        raise RuntimeError(f"{step} on {server.name}: {err.strip()[:200]}")
                    s.step(step, "done", {})
                    emit(StepFinished(step, True, f"{timings[step]:.1f} s"))
                await conn.run(f"rm -f {shlex.quote(remote)}", check=False)
            s.result = {"archive": name, "timings": timings}
            total = sum(timings.values())
            emit(
                Finished("DONE", 0, f"cluster restored from {name} in {total:.1f} s", {"timings_s": timings})
            )
            return 0
        finally:
            shutil.rmtree(work, ignore_errors=True)


def latest_receipt() -> dict[str, Any] | None:
    d = receipts_dir()
    files = sorted(d.glob("verify-*.json")) if d.exists() else []
    if not files:
        return None
    try:
        doc: dict[str, Any] = json.loads(files[-1].read_text())
        return doc
    except (OSError, ValueError):
        return None
