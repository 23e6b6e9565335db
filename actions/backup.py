"""Back up now, prune, check — Borg on the Storage Box, under the cluster lock, journaled.

* **Database** (``k3s-db``): a sentinel row is written into each database, then ``pg_dump -Fc`` of each
  (through the SSH tunnel to the primary) goes with a ``meta.json`` — the primary's identity, the replica
  lag, per-table row counts and the sentinel at dump time — into one archive ``db-<UTC time>``.  Streamed:
  each pg_dump writes into a FIFO that ``borg create --read-special`` reads (``--content-from-command``
  takes one stream per archive; the seed keeps both databases in one), so no dump touches the operator's
  disk.  Each dump runs in a snapshot exported by the transaction that counted its rows, so the counts a
  verify-restore checks are the dump's own.
* **Cluster** (``k3s-cluster``): ``k3s etcd-snapshot save`` on the server over SSH (the file fetched with
  SFTP), an export of every namespaced resource as YAML (secrets included — Borg encrypts), and the
  server's manifests directory, into ``cluster-<UTC time>``.
* **Prune** per repository with its keep-daily/keep-weekly (``--dry-run --list`` first), then ``compact``.
* **Check**: ``borg check`` (``--verify-data`` optional).

Borg's exit codes 0/1/2 become ok/warning/error; a locked repository is named as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
import shlex
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from console.clients.borg import BorgError, borg_env, borg_json
from console.clients.borg_run import BorgResult, borg_run
from console.clients.kube import request
from console.clients.pgtools import Primary
from console.clients.ssh import connect
from console.config import BorgRepository, Config
from console.events import Event, Finished, Log, StepFinished, StepStarted
from console.paths import state_home
from console.runner import ActionSession

SENTINEL_TABLE = "opsconsole_backup_sentinel"
NAMESPACED = (
    ("", "v1", "configmaps"),
    ("", "v1", "secrets"),
    ("", "v1", "services"),
    ("", "v1", "serviceaccounts"),
    ("", "v1", "persistentvolumeclaims"),
    ("apps", "v1", "deployments"),
    ("apps", "v1", "daemonsets"),
    ("apps", "v1", "statefulsets"),
    ("batch", "v1", "cronjobs"),
    ("networking.k8s.io", "v1", "ingresses"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("rbac.authorization.k8s.io", "v1", "roles"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"),
    ("postgresql.cnpg.io", "v1", "clusters"),
    ("postgresql.cnpg.io", "v1", "poolers"),
    ("postgresql.cnpg.io", "v1", "scheduledbackups"),
    ("cert-manager.io", "v1", "certificates"),
)
MANIFESTS = "/var/lib/rancher/k3s/server/manifests"


def repo(config: Config, what: str) -> BorgRepository:
    return next(r for r in config.backups.repositories if r.what == what)


def archive_name(prefix: str, when: datetime | None = None) -> str:
    return f"{prefix}-{(when or datetime.now(UTC)).strftime('%Y-%m-%dT%H:%M:%S')}"


def _private_dir(prefix: str) -> Path:
    base = state_home() / "tmp"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def progress_printer(emit: Callable[[Event], None], step: str) -> Callable[[dict[str, Any]], None]:
    last = [0.0]

    def on(doc: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and not doc.get("finished"):
            return
        last[0] = now
        if doc.get("type") == "archive_progress":
            size = int(doc.get("original_size") or 0)
            emit(Log("progress", f"{step}: {doc.get('nfiles', 0)} files, {size / 1e6:.1f} MB read"))
        elif doc.get("message"):
            emit(Log("progress", f"{step}: {doc['message']}"))

    return on


async def borg_create(
    config: Config,
    r: BorgRepository,
    name: str,
    paths: list[str],
    cwd: Path,
    emit: Callable[[Event], None],
    read_special: bool = False,
) -> BorgResult:
    """``borg create`` of ``paths`` (relative to ``cwd``) as ``REPO::name``, with progress events;
    ``read_special``: FIFOs are read as files (the streamed dumps)."""
    return await borg_run(
        [
            "create",
            "--json",
            "--progress",
            "--log-json",
            *(["--read-special"] if read_special else []),
            "--compression",
            "lz4",
            f"{config.backups.repo_url(r)}::{name}",
            *paths,
        ],
        borg_env(config.backups, config.ssh),
        progress_printer(emit, "upload"),
        cwd=cwd,
    )


async def stream_dumps(
    config: Config,
    r: BorgRepository,
    name: str,
    files: list[str],
    work: Path,
    emit: Callable[[Event], None],
    primary: Primary,
    snapshots: dict[str, str],
) -> BorgResult:
    """pg_dump into FIFOs that ``borg create --read-special`` reads one after the other: the dumps stream
    into the archive.  Either side failing stops the other — a pg_dump that dies leaves borg waiting on its
    pipe, a borg that dies leaves pg_dump waiting for a reader — and an archive holding a failed dump is
    deleted, so the newest complete archive stays the newest."""
    procs = {db: await primary.start_dump(db, work / f"{db}.dump", snap) for db, snap in snapshots.items()}
    upload = asyncio.ensure_future(borg_create(config, r, name, files, work, emit, read_special=True))
    dumps = [asyncio.ensure_future(Primary.finish_dump(db, p)) for db, p in procs.items()]
    try:
        await asyncio.wait([upload, *dumps], return_when=asyncio.FIRST_EXCEPTION)
        failed = next((t.exception() for t in dumps if t.done() and t.exception()), None)
        if failed is not None:
            upload.cancel()
            with contextlib.suppress(asyncio.CancelledError, BorgError):
                await upload
            with contextlib.suppress(BorgError):  # it may not exist: borg was stopped before it committed
                await borg_run(
                    ["delete", f"{config.backups.repo_url(r)}::{name}"], borg_env(config.backups, config.ssh)
                )
            raise failed
        return await upload  # a BorgError here: the dumps are killed below
    finally:
        for p in procs.values():
            if p.returncode is None:
                p.kill()
        for t in dumps:
            t.cancel()
        await asyncio.gather(*dumps, return_exceptions=True)


async def backup_db(s: ActionSession, emit: Callable[[Event], None]) -> dict[str, Any]:
    config = s.config
    r = repo(config, "db")
    primary = Primary(config, s.api)
    work = _private_dir("db-")
    try:
        token = secrets.token_hex(8)
        cluster = await request(
            s.api,
            "GET",
            f"/apis/postgresql.cnpg.io/v1/namespaces/{config.database.namespace}/clusters/{config.database.cluster}",
        )
        meta: dict[str, Any] = {
            "taken": datetime.now(UTC).isoformat(),
            "primary": (cluster.get("status") or {}).get("currentPrimary"),
            "timeline": (cluster.get("status") or {}).get("timelineID"),
            "sentinel": token,
            "databases": {},
        }
        emit(StepStarted("dump", f"pg_dump of {', '.join(config.database.databases)} from {meta['primary']}"))
        lag = await primary.sql(
            "postgres",
            "SELECT application_name, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint "
            "FROM pg_stat_replication",
        )
        meta["replica_lag_bytes"] = {str(name): int(b or 0) for name, b in lag}
        dbs = list(config.database.databases)
        for dbname in dbs:
            await primary.sql(
                dbname,
                f"CREATE TABLE IF NOT EXISTS {SENTINEL_TABLE} "
                "(token text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())",
            )
            await primary.sql(dbname, f"INSERT INTO {SENTINEL_TABLE} (token) VALUES (%s)", (token,))
        name = archive_name("db")
        async with contextlib.AsyncExitStack() as snapshots:
            ids = {}
            for dbname in dbs:
                ids[dbname], counts = await snapshots.enter_async_context(primary.snapshot(dbname))
                meta["databases"][dbname] = {"row_counts": counts, "snapshot": ids[dbname]}
                os.mkfifo(work / f"{dbname}.dump", 0o600)
            (work / "meta.json").write_text(json.dumps(meta, indent=2))
            emit(StepFinished("dump", True, "sentinel written; snapshots exported and their rows counted"))
            s.step("dump", "done", {"primary": meta["primary"]})
            emit(StepStarted("upload", f"pg_dump streamed into borg create {r.name}::{name}"))
            files = [f"{d}.dump" for d in dbs] + ["meta.json"]
            result = await stream_dumps(config, r, name, files, work, emit, primary, ids)
        stats = result.json().get("archive", {}).get("stats", {})
        emit(
            StepFinished(
                "upload", True, f"{name}: {result.verdict}, {stats.get('deduplicated_size', 0)} bytes new"
            )
        )
        s.step("upload", "done", {"archive": name, "borg": result.verdict})
        return {
            "repository": r.name,
            "archive": name,
            "borg": result.verdict,
            "primary": meta["primary"],
            "replica_lag_bytes": meta["replica_lag_bytes"],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
        await primary.close()


def _raw(data: bytes | str | None) -> bytes:
    return data.encode() if isinstance(data, str) else (data or b"")


def _clean(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {
        k: v
        for k, v in obj.get("metadata", {}).items()
        if k in ("name", "namespace", "labels", "annotations")
    }
    out = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    out["metadata"] = meta
    return out


async def export_resources(api: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for group, version, plural in NAMESPACED:
        path = f"/apis/{group}/{version}/{plural}" if group else f"/api/{version}/{plural}"
        doc = await request(api, "GET", path)
        kind = doc.get("kind", "List").removesuffix("List")
        api_version = f"{group}/{version}" if group else version
        items = []
        for item in doc.get("items", []):
            if (item.get("metadata") or {}).get("ownerReferences"):
                continue  # made by a controller (ReplicaSets' pods, CNPG's services): it makes them again
            items.append({"apiVersion": api_version, "kind": kind, **_clean(item)})
        out[plural if not group else f"{plural}.{group}"] = items
    return out


async def backup_cluster(s: ActionSession, emit: Callable[[Event], None]) -> dict[str, Any]:
    config = s.config
    r = repo(config, "cluster")
    server = next(n for n in config.nodes if n.role == "server")
    work = _private_dir("cluster-")
    try:
        emit(StepStarted("etcd", f"k3s etcd-snapshot save on {server.name}"))
        conn = await connect(server.ssh_host, config.ssh)
        async with conn:
            name = f"opsconsole-{int(time.time())}"
            res = await conn.run(f"k3s etcd-snapshot save --name {name}", check=False)
            if res.exit_status != 0:
                raise RuntimeError(f"k3s etcd-snapshot save: {str(res.stderr).strip()[:200]}")
            listing = await conn.run("k3s etcd-snapshot ls", check=False)
            location = next(
                (line.split()[1] for line in str(listing.stdout).splitlines() if line.startswith(name)), None
            )
            if location is None:
                raise RuntimeError("the new etcd snapshot is not listed by k3s etcd-snapshot ls")
            remote = location.removeprefix("file://")
            # Files travel over the session itself (cat / tar), which any sshd serves, SFTP or not.
            snap = await conn.run(f"cat {shlex.quote(remote)}", encoding=None, check=False)
            if snap.exit_status != 0:
                raise RuntimeError(f"cannot read {remote} on {server.name}")
            (work / "etcd-snapshot").write_bytes(_raw(snap.stdout))
            manifests = work / "manifests"
            manifests.mkdir()
            # "$HOME/.." is / for root on a real node, and the node's own root in the lab's sandbox.
            tar = await conn.run(f'tar -C "$HOME/..{MANIFESTS}" -cf - .', encoding=None, check=False)
            if tar.exit_status == 0 and tar.stdout:
                with tarfile.open(fileobj=io.BytesIO(_raw(tar.stdout))) as t:
                    t.extractall(manifests, filter="data")
        emit(StepFinished("etcd", True, f"snapshot {name} fetched"))
        emit(StepStarted("export", "export of every namespaced resource as YAML"))
        exported = await export_resources(s.api)
        res_dir = work / "resources"
        res_dir.mkdir()
        for key, items in exported.items():
            (res_dir / f"{key}.yaml").write_text(yaml.safe_dump_all(items, sort_keys=False))
        count = sum(len(v) for v in exported.values())
        emit(StepFinished("export", True, f"{count} objects"))
        archive = archive_name("cluster")
        emit(StepStarted("upload", f"borg create {r.name}::{archive}"))
        result = await borg_create(config, r, archive, ["."], work, emit)
        emit(StepFinished("upload", True, f"{archive}: {result.verdict}"))
        s.step("upload", "done", {"archive": archive, "borg": result.verdict})
        return {"repository": r.name, "archive": archive, "borg": result.verdict, "objects": count}
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def run_backup(config: Config, emit: Callable[[Event], None], what: str) -> int:
    async with ActionSession(config, "backup", {"what": what}, emit) as s:
        done = []
        if what in ("db", "all"):
            done.append(await backup_db(s, emit))
        if what in ("cluster", "all"):
            done.append(await backup_cluster(s, emit))
        s.result = {"archives": [d["archive"] for d in done]}
        warn = any(d["borg"] == "warning" for d in done)
        emit(
            Finished(
                "DONE",
                1 if warn else 0,
                ", ".join(f"{d['repository']}::{d['archive']} ({d['borg']})" for d in done),
                {"backups": done},
            )
        )
        return 1 if warn else 0


async def run_prune(config: Config, emit: Callable[[Event], None], dry_run: bool) -> int:
    env = borg_env(config.backups, config.ssh)

    async def prune_all() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for r in config.backups.repositories:
            prefix = "db" if r.what == "db" else "cluster"
            args = [
                "prune",
                "--list",
                "--log-json",
                f"--keep-daily={r.keep_daily}",
                f"--keep-weekly={r.keep_weekly}",
                f"--glob-archives={prefix}-*",
            ]
            if dry_run:
                args.append("--dry-run")
            emit(StepStarted("prune", f"{'preview of ' if dry_run else ''}borg prune {r.name}"))
            res = await borg_run([*args, config.backups.repo_url(r)], env)
            pruned = [
                m.split()[-1] if False else m
                for m in res.messages
                if m.startswith(("Would prune", "Pruning archive"))
            ]
            kept = [m for m in res.messages if m.startswith("Keeping archive")]
            names = [_archive_of(m) for m in pruned]
            out[r.name] = {"prune": names, "keep": [_archive_of(m) for m in kept]}
            emit(
                StepFinished(
                    "prune",
                    True,
                    f"{r.name}: {len(names)} {'would go' if dry_run else 'pruned'}, {len(kept)} kept",
                )
            )
            if not dry_run:
                await borg_run(["compact", "--log-json", config.backups.repo_url(r)], env)
        return out

    if dry_run:
        result = await prune_all()
        emit(
            Finished(
                "PLAN",
                0,
                "dry run: " + "; ".join(f"{k}: {len(v['prune'])} would go" for k, v in result.items()),
                {"prune": result},
            )
        )
        return 0
    async with ActionSession(config, "prune", {}, emit) as s:
        result = await prune_all()
        s.result = {k: len(v["prune"]) for k, v in result.items()}
        emit(
            Finished(
                "DONE",
                0,
                "; ".join(f"{k}: {len(v['prune'])} pruned" for k, v in result.items()),
                {"prune": result},
            )
        )
        return 0


def _archive_of(message: str) -> str:
    """The archive name in borg's ``Keeping archive (rule: daily #1): NAME  TIME [ID]`` and
    ``Would prune:     NAME  TIME [ID]`` lines."""
    rest = message.split("):", 1)[1] if "):" in message else message.split(":", 1)[1]
    return rest.split()[0]


async def run_check(config: Config, emit: Callable[[Event], None], verify_data: bool) -> int:
    env = borg_env(config.backups, config.ssh)
    results = {}
    for r in config.backups.repositories:
        emit(StepStarted("check", f"borg check {r.name}{' --verify-data' if verify_data else ''}"))
        try:
            res = await borg_run(
                [
                    "check",
                    "--log-json",
                    *(["--verify-data"] if verify_data else []),
                    config.backups.repo_url(r),
                ],
                env,
            )
            results[r.name] = res.verdict
        except BorgError as exc:
            results[r.name] = f"error: {exc}"
        emit(StepFinished("check", results[r.name] == "ok", f"{r.name}: {results[r.name]}"))
    record = {"at": time.time(), "verify_data": verify_data, "results": results}
    path = state_home() / "backup-check.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    bad = [k for k, v in results.items() if v != "ok"]
    code = 1 if bad else 0  # a warning (borg 1) or an error (2) is not a clean check: exit 1
    emit(
        Finished(
            "DONE" if not bad else "FAIL", code, ", ".join(f"{k}: {v}" for k, v in results.items()), record
        )
    )
    return code


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


async def run_archives(config: Config, emit: Callable[[Event], None]) -> int:
    """Every schedule archive per repository, newest first: name, time, original and deduplicated size,
    file count (``borg info --json``; read-only, no cluster lock).

    The live Backups panel reads only names and times (``borg list``, cheap enough to poll); sizes need each
    archive's metadata, so they are read here, on demand."""
    env = borg_env(config.backups, config.ssh)
    report: dict[str, Any] = {}
    failed = []
    for r in config.backups.repositories:
        prefix = "db-" if r.what == "db" else "cluster-"
        emit(StepStarted("archives", f"borg info {r.name} ({prefix}*)"))
        try:
            doc = await borg_json(
                ["info", "--json", "--glob-archives", f"{prefix}*", config.backups.repo_url(r)], env, 120.0
            )
        except BorgError as exc:
            failed.append(r.name)
            report[r.name] = {"error": str(exc)}
            emit(StepFinished("archives", False, f"{r.name}: {exc}"))
            continue
        rows = [
            {
                "name": a["name"],
                "start": a["start"],
                "original_size": int(a["stats"]["original_size"]),
                "deduplicated_size": int(a["stats"]["deduplicated_size"]),
                "nfiles": int(a["stats"]["nfiles"]),
            }
            for a in sorted(doc.get("archives", []), key=lambda a: str(a["start"]), reverse=True)
        ]
        report[r.name] = {"archives": rows}
        for a in rows:
            emit(
                Log(
                    r.name,
                    f"{a['name']:<26} {a['start'][:16].replace('T', ' ')}  {_size(a['original_size']):>10} "
                    f"original, {_size(a['deduplicated_size']):>10} new, {a['nfiles']} files",
                )
            )
        emit(StepFinished("archives", True, f"{r.name}: {len(rows)} archives"))
    emit(
        Finished(
            "FAIL" if failed else "DONE",
            1 if failed else 0,
            ", ".join(
                f"{k}: {v['error']}" if "error" in v else f"{k}: {len(v['archives'])} archives"
                for k, v in report.items()
            ),
            report,
        )
    )
    return 1 if failed else 0
