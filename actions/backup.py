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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from console.action import Action, Inspection, Outcome, P, Plan, param
from console.clients import cnpg
from console.clients.borg import BorgError, borg_env, borg_json
from console.clients.borg_run import BorgResult, borg_run
from console.clients.kube import request
from console.clients.pgtools import DumpSource, PgToolError, Primary
from console.clients.ssh import connect
from console.config import BorgRepository, Config
from console.errors import ActionFailed, Verdict
from console.events import Event, Log, PlanItem, Progress, StepFinished, StepStarted
from console.paths import state_home
from console.report import Report, Section, Table
from console.runner import Run

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
    """Borg's ``--progress --log-json`` lines as :class:`Progress` events, at most two a second."""
    last = [0.0]

    def on(doc: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and not doc.get("finished"):
            return
        last[0] = now
        if doc.get("type") == "archive_progress":
            size = int(doc.get("original_size") or 0)
            files = int(doc.get("nfiles") or 0)
            text = f"{step}: {files} files, {size / 1e6:.1f} MB read"
            emit(Progress(step, text, bytes=size, items=files))
        elif doc.get("type") == "progress_percent" and doc.get("total"):
            fraction = float(doc.get("current") or 0) / float(doc["total"])
            emit(Progress(step, f"{step}: {doc.get('message') or f'{fraction:.0%}'}", fraction=fraction))
        elif doc.get("message"):
            emit(Progress(step, f"{step}: {doc['message']}"))

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
    source: DumpSource,
) -> BorgResult:
    """pg_dump into FIFOs that ``borg create --read-special`` reads one after the other: the dumps stream
    into the archive.  Either side failing stops the other — a pg_dump that dies leaves borg waiting on its
    pipe, a borg that dies leaves pg_dump waiting for a reader — and an archive holding a failed dump is
    deleted, so the newest complete archive stays the newest."""
    jobs = [await primary.start_dump(db, work / f"{db}.dump", snap, source) for db, snap in snapshots.items()]
    upload = asyncio.ensure_future(borg_create(config, r, name, files, work, emit, read_special=True))
    dumps = [j.task for j in jobs]
    try:
        await asyncio.wait([upload, *dumps], return_when=asyncio.FIRST_EXCEPTION)
        if upload.done() and not upload.cancelled() and upload.exception() is not None:
            raise upload.exception()  # type: ignore[misc]  # borg's own word, not its readers' echo
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
        return await upload  # a BorgError here: the dumps are stopped below
    finally:
        for j in jobs:
            if not j.task.done():
                j.kill()
        await asyncio.gather(*dumps, return_exceptions=True)


async def _sentinel(primary: Primary, dbs: list[str], token: str) -> None:
    """A row only this backup wrote, in each database: a verify-restore looks for it in the dump."""
    for dbname in dbs:
        await primary.sql(
            dbname,
            f"CREATE TABLE IF NOT EXISTS {SENTINEL_TABLE} "
            "(token text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())",
        )
        await primary.sql(dbname, f"INSERT INTO {SENTINEL_TABLE} (token) VALUES (%s)", (token,))


async def _db_meta(run: Run, primary: Primary, token: str) -> dict[str, Any]:
    status = (await cnpg.cluster(await run.kube(), run.config)).get("status") or {}
    lag = await primary.sql(
        "postgres",
        "SELECT application_name, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint "
        "FROM pg_stat_replication",
    )
    return {
        "taken": datetime.now(UTC).isoformat(),
        "primary": status.get("currentPrimary"),
        "timeline": status.get("timelineID"),
        "sentinel": token,
        "dump_via": run.config.database.dump_via,
        "replica_lag_bytes": {str(name): int(b or 0) for name, b in lag},
        "databases": {},
    }


async def _source(run: Run, primary: Primary) -> DumpSource:
    """The instance to dump (after the sentinel): a replica that has replayed it, else the primary."""
    source = await primary.dump_source()
    if not await primary.replayed(source):
        run.emit(Log("warning", f"{source.instance} has not replayed the sentinel: the primary dumps"))
        source = await primary.primary_source()
    return source


async def _dump_and_upload(
    run: Run, primary: Primary, source: DumpSource, meta: dict[str, Any], work: Path
) -> tuple[str, BorgResult]:
    """Snapshots exported and counted at ``source``, then every dump streamed into one new archive."""
    config, emit, r = run.config, run.emit, repo(run.config, "db")
    dbs = list(config.database.databases)
    meta["dumped_from"] = {"instance": source.instance, "role": source.role, "lag_bytes": source.lag_bytes}
    name = archive_name("db")
    async with contextlib.AsyncExitStack() as snapshots:
        ids = {}
        for dbname in dbs:
            ids[dbname], counts = await snapshots.enter_async_context(primary.snapshot(dbname, source))
            meta["databases"][dbname] = {"row_counts": counts, "snapshot": ids[dbname]}
            (work / f"{dbname}.dump").unlink(missing_ok=True)  # a FIFO of an attempt before
            os.mkfifo(work / f"{dbname}.dump", 0o600)
        (work / "meta.json").write_text(json.dumps(meta, indent=2))
        emit(StepFinished("dump", True, "sentinel written; snapshots exported and their rows counted"))
        run.step("dump", "done", {"primary": meta["primary"], "from": source.instance})
        emit(StepStarted("upload", f"pg_dump streamed into borg create {r.name}::{name}"))
        files = [f"{d}.dump" for d in dbs] + ["meta.json"]
        return name, await stream_dumps(config, r, name, files, work, emit, primary, ids, source)


async def backup_db(run: Run) -> dict[str, Any]:
    config, emit = run.config, run.emit
    primary = Primary(config, await run.kube())
    work = _private_dir("db-")
    try:
        token = secrets.token_hex(8)
        await primary.check_tools("pg_dump")
        meta = await _db_meta(run, primary, token)
        await _sentinel(primary, list(config.database.databases), token)
        source = await _source(run, primary)
        where = f"{source.instance} ({source.role}, {config.database.dump_via})"
        emit(StepStarted("dump", f"pg_dump of {', '.join(config.database.databases)} from {where}"))
        try:
            name, result = await _dump_and_upload(run, primary, source, meta, work)
        except PgToolError as exc:
            # A standby cancels a long query whose rows its replay must remove (max_standby_streaming_delay,
            # unless hot_standby_feedback holds them back): the primary has no such conflict.
            if source.role != "replica" or "conflict with recovery" not in str(exc):
                raise
            emit(
                Log("warning", f"{source.instance} cancelled the dump (recovery conflict): the primary dumps")
            )
            name, result = await _dump_and_upload(run, primary, await primary.primary_source(), meta, work)
        stats = result.json().get("archive", {}).get("stats", {})
        emit(
            StepFinished(
                "upload", True, f"{name}: {result.verdict}, {stats.get('deduplicated_size', 0)} bytes new"
            )
        )
        run.step("upload", "done", {"archive": name, "borg": result.verdict})
        return {
            "repository": repo(config, "db").name,
            "archive": name,
            "borg": result.verdict,
            "primary": meta["primary"],
            "dumped_from": meta["dumped_from"],
            "dump_via": meta["dump_via"],
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


async def backup_cluster(run: Run) -> dict[str, Any]:
    config, emit = run.config, run.emit
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
                raise ActionFailed(f"k3s etcd-snapshot save: {str(res.stderr).strip()[:200]}")
            listing = await conn.run("k3s etcd-snapshot ls", check=False)
            location = next(
                (line.split()[1] for line in str(listing.stdout).splitlines() if line.startswith(name)), None
            )
            if location is None:
                raise ActionFailed("the new etcd snapshot is not listed by k3s etcd-snapshot ls")
            remote = location.removeprefix("file://")
            # Files travel over the session itself (cat / tar), which any sshd serves, SFTP or not.
            snap = await conn.run(f"cat {shlex.quote(remote)}", encoding=None, check=False)
            if snap.exit_status != 0:
                raise ActionFailed(f"cannot read {remote} on {server.name}")
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
        exported = await export_resources(await run.kube())
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
        run.step("upload", "done", {"archive": archive, "borg": result.verdict})
        return {"repository": r.name, "archive": archive, "borg": result.verdict, "objects": count}
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class BorgParams:
    """What every Borg action takes: how long to wait for a repository another borg holds."""

    lock_wait: int | None = param(
        "--lock-wait", "wait up to N s for a locked Borg repository (default: fail)", tui=False
    )


class BorgAction(Action[P]):
    """An action on the Storage Box's repositories; ``--lock-wait`` overrides ``backups.lock_wait_s``."""

    def __init__(self, config: Config, params: P) -> None:
        wait = getattr(params, "lock_wait", None)
        if wait is not None:
            backups = config.backups.model_copy(update={"lock_wait_s": max(0, wait)})
            config = config.model_copy(update={"backups": backups})
        super().__init__(config, params)

    @property
    def env(self) -> dict[str, str]:
        return borg_env(self.config.backups, self.config.ssh)


@dataclass(frozen=True)
class BackupParams(BorgParams):
    what: str = param("--what", "what to back up", "db", choices=("db", "cluster", "all"), tui_default="all")


@dataclass(frozen=True)
class BackupReport(Report):
    """One line per archive written."""

    kind = "backup"
    backups: list[dict[str, Any]]

    def sections(self, full: bool) -> list[Section]:
        rows = [(b["repository"], b["archive"], b["borg"]) for b in self.backups]
        return [Table("archives", ("repository", "archive", "borg"), rows)]


class Backup(BorgAction[BackupParams]):
    name = "backup"
    title = "Back up now"
    description = "pg_dump and/or cluster backup into Borg (--what db|cluster|all)"
    Params = BackupParams
    needs_yes = False  # it adds an archive, nothing else

    def confirm_word(self) -> str | None:
        return None

    async def plan(self, run: Run) -> Plan:
        items = []
        if self.params.what in ("db", "all"):
            dbs = ", ".join(self.config.database.databases)
            items.append(PlanItem("create", f"pg_dump of {dbs} streamed into {repo(self.config, 'db').name}"))
        if self.params.what in ("cluster", "all"):
            items.append(
                PlanItem(
                    "create",
                    f"etcd snapshot, resources and manifests into {repo(self.config, 'cluster').name}",
                )
            )
        return Plan(items)

    async def execute(self, run: Run) -> Outcome:
        done = []
        if self.params.what in ("db", "all"):
            done.append(await backup_db(run))
        if self.params.what in ("cluster", "all"):
            done.append(await backup_cluster(run))
        warn = any(d["borg"] == "warning" for d in done)
        summary = ", ".join(f"{d['repository']}::{d['archive']} ({d['borg']})" for d in done)
        return Outcome(Verdict.WARNING if warn else Verdict.DONE, summary, BackupReport(done))


def _archive_of(message: str) -> str:
    """The archive name in borg's ``Keeping archive (rule: daily #1): NAME  TIME [ID]`` and
    ``Would prune:     NAME  TIME [ID]`` lines."""
    rest = message.split("):", 1)[1] if "):" in message else message.split(":", 1)[1]
    return rest.split()[0]


class Prune(BorgAction[BorgParams]):
    """Per repository ``borg prune`` by its keep-daily/keep-weekly, then ``compact``.

    Headless it runs without ``--yes``: it removes only what the configured retention says, as a cron
    job of borgmatic's would, and scripts run it so; ``--dry-run`` lists what would go, and the TUI asks
    for ``prune`` to be typed after showing that list."""

    name = "prune"
    title = "Prune backups"
    description = "borg prune per retention (--dry-run previews), then compact"
    Params = BorgParams
    needs_yes = False

    async def _prune(self, run: Run, dry_run: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for r in self.config.backups.repositories:
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
            run.emit(StepStarted("prune", f"{'preview of ' if dry_run else ''}borg prune {r.name}"))
            res = await borg_run([*args, self.config.backups.repo_url(r)], self.env)
            pruned = [m for m in res.messages if m.startswith(("Would prune", "Pruning archive"))]
            kept = [m for m in res.messages if m.startswith("Keeping archive")]
            names = [_archive_of(m) for m in pruned]
            out[r.name] = {"prune": names, "keep": [_archive_of(m) for m in kept]}
            verb = "would go" if dry_run else "pruned"
            run.emit(StepFinished("prune", True, f"{r.name}: {len(names)} {verb}, {len(kept)} kept"))
            if not dry_run:
                await borg_run(["compact", "--log-json", self.config.backups.repo_url(r)], self.env)
        return out

    async def plan(self, run: Run) -> Plan:
        result = await self._prune(run, dry_run=True)
        items = [
            PlanItem("delete", f"{k}: {name}", subject=k) for k, v in result.items() for name in v["prune"]
        ]
        summary = "dry run: " + "; ".join(f"{k}: {len(v['prune'])} would go" for k, v in result.items())
        return Plan(items, summary, {"prune": result})

    async def execute(self, run: Run) -> Outcome:
        result = await self._prune(run, dry_run=False)
        summary = "; ".join(f"{k}: {len(v['prune'])} pruned" for k, v in result.items())
        return Outcome(Verdict.DONE, summary, {"prune": result})


@dataclass(frozen=True)
class CheckParams(BorgParams):
    verify_data: bool = param("--verify-data", "read every chunk (slow)", False)


class BackupCheck(Inspection[CheckParams], BorgAction[CheckParams]):
    """``borg check`` of every repository; the result is kept for the Backups panel."""

    name = "backup-check"
    title = "Check backups"
    description = "borg check of every repository (--verify-data)"
    Params = CheckParams

    async def execute(self, run: Run) -> Outcome:
        verify = self.params.verify_data
        results = {}
        for r in self.config.backups.repositories:
            run.emit(StepStarted("check", f"borg check {r.name}{' --verify-data' if verify else ''}"))
            try:
                res = await borg_run(
                    [
                        "check",
                        "--log-json",
                        *(["--verify-data"] if verify else []),
                        self.config.backups.repo_url(r),
                    ],
                    self.env,
                )
                results[r.name] = res.verdict
            except BorgError as exc:
                results[r.name] = f"error: {exc}"
            run.emit(StepFinished("check", results[r.name] == "ok", f"{r.name}: {results[r.name]}"))
        record = {"at": time.time(), "verify_data": verify, "results": results}
        path = state_home() / "backup-check.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
        bad = [k for k, v in results.items() if v != "ok"]  # a warning (borg 1) is not a clean check either
        summary = ", ".join(f"{k}: {v}" for k, v in results.items())
        return Outcome(Verdict.FAIL if bad else Verdict.DONE, summary, record)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


class Archives(Inspection[BorgParams], BorgAction[BorgParams]):
    """Every schedule archive per repository, newest first: name, time, original and deduplicated size,
    file count (``borg info --json``; read-only, no cluster lock).

    The live Backups panel reads only names and times (``borg list``, cheap enough to poll); sizes need each
    archive's metadata, so they are read here, on demand."""

    name = "archives"
    title = "List backup archives"
    description = "every schedule archive per repository: time, original and deduplicated size, files"
    Params = BorgParams

    async def execute(self, run: Run) -> Outcome:
        report: dict[str, Any] = {}
        failed = []
        for r in self.config.backups.repositories:
            prefix = "db-" if r.what == "db" else "cluster-"
            run.emit(StepStarted("archives", f"borg info {r.name} ({prefix}*)"))
            try:
                doc = await borg_json(
                    ["info", "--json", "--glob-archives", f"{prefix}*", self.config.backups.repo_url(r)],
                    self.env,
                    120.0,
                )
            except BorgError as exc:
                failed.append(r.name)
                report[r.name] = {"error": str(exc)}
                run.emit(StepFinished("archives", False, f"{r.name}: {exc}"))
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
                run.emit(
                    Log(
                        r.name,
                        f"{a['name']:<26} {a['start'][:16].replace('T', ' ')}  "
                        f"{_size(a['original_size']):>10} "
                        f"original, {_size(a['deduplicated_size']):>10} new, {a['nfiles']} files",
                    )
                )
            run.emit(StepFinished("archives", True, f"{r.name}: {len(rows)} archives"))
        summary = ", ".join(
            f"{k}: {v['error']}" if "error" in v else f"{k}: {len(v['archives'])} archives"
            for k, v in report.items()
        )
        return Outcome(Verdict.FAIL if failed else Verdict.DONE, summary, report)
