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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actions.backup import (
    SENTINEL_TABLE,
    BorgAction,
    BorgParams,
    _private_dir,
    archive_name,
    repo,
    stream_dumps,
)
from console.action import Outcome, Plan, param
from console.clients.borg import BorgError
from console.clients.borg_run import borg_run
from console.clients.pgtools import Primary
from console.clients.ssh import connect
from console.config import Config
from console.errors import ActionFailed, UsageError, Verdict
from console.events import PlanItem, StepFinished, StepStarted
from console.paths import state_home
from console.report import Facts, Report, Section, Table, render
from console.runner import Run


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


@dataclass(frozen=True)
class VerifyReceipt(Report):
    """A verify-restore's receipt (saved under ``receipts/``; the Backups panel shows the newest)."""

    kind = "verify-restore"
    at: float
    archive: str
    database: str
    ok: bool
    rto_s: float
    rpo_s: float
    tables: int
    rows: int
    mismatched: dict[str, Any]
    sentinel_found: bool
    primary_at_dump: str | None

    def sections(self, full: bool) -> list[Section]:
        return [
            Facts(
                "",
                [
                    ("archive", self.archive),
                    ("tables, rows", f"{self.tables}, {self.rows}"),
                    ("RTO, RPO", f"{self.rto_s} s, {self.rpo_s / 3600:.1f} h"),
                    ("sentinel", "found" if self.sentinel_found else "NOT found"),
                    ("mismatched", ", ".join(self.mismatched) or "none"),
                ],
            )
        ]


class VerifyRestore(BorgAction[BorgParams]):
    name = "verify-restore"
    title = "Verify a restore"
    description = "restore the latest dump into a scratch database, compare row counts, find the sentinel"
    Params = BorgParams
    needs_yes = False  # a scratch database of its own, dropped afterwards

    def confirm_word(self) -> str | None:
        return None

    async def execute(self, run: Run) -> Outcome:
        config, emit = self.config, run.emit
        primary = Primary(config, await run.kube())
        work = _private_dir("verify-")
        scratch = f"opsconsole_verify_{int(time.time())}"
        try:
            t0 = time.time()
            name, taken = await _latest(config, "db", self.env, "latest")
            await primary.check_tools("pg_restore")
            dbname = config.database.databases[0]
            emit(StepStarted("extract", f"borg extract {name}: {dbname}.dump, meta.json"))
            await _extract(config, "db", name, self.env, [f"{dbname}.dump", "meta.json"], work)
            meta = json.loads((work / "meta.json").read_text()) if (work / "meta.json").exists() else {}
            emit(StepFinished("extract", True, f"{(work / f'{dbname}.dump').stat().st_size} bytes"))
            emit(StepStarted("restore", f"pg_restore into scratch database {scratch}"))
            run.step("scratch", "created", {"database": scratch})
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
        receipt = VerifyReceipt(
            at=time.time(),
            archive=name,
            database=dbname,
            ok=ok,
            rto_s=round(rto, 2),
            rpo_s=round(time.time() - taken_at.timestamp(), 1),
            tables=len(expected),
            rows=sum(counts.values()),
            mismatched=mismatched,
            sentinel_found=found,
            primary_at_dump=meta.get("primary"),
        )
        receipts_dir().mkdir(parents=True, exist_ok=True)
        path = receipts_dir() / f"verify-{time.strftime('%Y%m%dT%H%M%S')}.json"
        path.write_text(render(receipt, "json"))
        summary = (
            f"{name}: {'verified' if ok else 'FAILED'} — {receipt.tables} tables, {receipt.rows} rows, "
            f"RTO {receipt.rto_s} s, RPO {receipt.rpo_s / 3600:.1f} h"
        )
        return Outcome(Verdict.PASS if ok else Verdict.FAIL, summary, receipt, str(path))


def _databases(config: Config) -> list[str]:
    return list(config.database.databases)


@dataclass(frozen=True)
class RestoreParams(BorgParams):
    db: str | None = param(
        "--db",
        "the database whose dump to restore (default: production's; in the TUI, staging's own)",
        choices=_databases,
        tui_default=lambda config: config.database.databases[-1],
    )
    archive: str = param("--archive", "archive name or latest", "latest")
    into: str | None = param("--into", "target database (default: staging)", choices=_databases)
    i_mean_production: bool = param(
        "--i-mean-production", "allow the production database as target (headless only)", False, tui=False
    )


@dataclass(frozen=True)
class RestoreReport(Report):
    kind = "restore"
    row_counts: dict[str, int]

    def sections(self, full: bool) -> list[Section]:
        rows = [(t, str(n)) for t, n in sorted(self.row_counts.items())]
        return [Table("restored", ("table", "rows"), rows)] if full else []


class Restore(BorgAction[RestoreParams]):
    """A database from a dump: into staging by default; into production only after a safety archive of
    its current state, with ``--i-mean-production`` (headless only: the TUI restores into staging)."""

    name = "restore"
    title = "Restore a database"
    description = "restore --db from --archive (latest) --into a database (staging by default)"
    Params = RestoreParams
    guide = (
        "Restores staging from the latest dump; production only headless with --i-mean-production after "
        "a safety archive."
    )

    @property
    def source(self) -> str:
        return self.params.db or self.config.database.databases[0]

    @property
    def target(self) -> str:
        return self.params.into or self.config.database.databases[-1]

    @property
    def production(self) -> bool:
        return self.target == self.config.database.databases[0]

    def confirm_word(self) -> str:
        return self.target

    def unconfirmed(self) -> str:
        return f"restoring into {self.target} replaces its data: add --yes"

    def journal_params(self) -> dict[str, Any]:
        return {"db": self.source, "archive": self.params.archive, "into": self.target}

    def validate(self) -> None:
        dbs = self.config.database.databases
        for flag, value in (("--db", self.source), ("--into", self.target)):
            if value not in dbs:
                raise UsageError(f"{flag} {value!r} is not one of {', '.join(dbs)}")
        if self.production and not self.params.i_mean_production:
            raise UsageError(
                f"restoring into the production database {self.target} replaces its data: "
                "add --yes --i-mean-production"
            )

    async def plan(self, run: Run) -> Plan:
        items = []
        if self.production:
            items.append(PlanItem("create", f"safety archive of {self.target} before it is replaced"))
        items.append(
            PlanItem("change", f"{self.target} replaced by {self.source} from {self.params.archive}")
        )
        return Plan(items)

    async def execute(self, run: Run) -> Outcome:
        config, emit, target, db = self.config, run.emit, self.target, self.source
        primary = Primary(config, await run.kube())
        work = _private_dir("restore-")
        try:
            t0 = time.time()
            name, _ = await _latest(config, "db", self.env, self.params.archive)
            await primary.check_tools("pg_dump", "pg_restore")
            if self.production:
                emit(StepStarted("safety", f"safety archive of {target} before it is replaced"))
                safety = archive_name(f"safety-{target}")
                source = await primary.primary_source()  # the newest state of what is about to be replaced
                async with primary.snapshot(target, source) as (snap, _):  # streamed, as every dump
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
                        source,
                    )
                run.step("safety", "done", {"archive": safety})
                emit(StepFinished("safety", True, f"{safety} stored"))
            emit(StepStarted("extract", f"borg extract {name}: {db}.dump"))
            await _extract(config, "db", name, self.env, [f"{db}.dump"], work)
            emit(StepFinished("extract", True, f"{(work / f'{db}.dump').stat().st_size} bytes"))
            emit(StepStarted("restore", f"{db} from {name} into {target}"))
            run.step("restore", "started", {"into": target})
            await primary.recreate(target, config.database.app_user)
            await primary.restore(target, work / f"{db}.dump", config.database.app_user)
            counts = await primary.row_counts(target)
            took = time.time() - t0
            emit(
                StepFinished(
                    "restore", True, f"{len(counts)} tables, {sum(counts.values())} rows in {took:.1f} s"
                )
            )
            summary = f"{db} from {name} restored into {target} in {took:.1f} s"
            return Outcome(Verdict.DONE, summary, RestoreReport(counts))
        finally:
            await primary.close()
            shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class RestoreClusterParams(BorgParams):
    archive: str = param("--archive", "archive name or latest", "latest")


@dataclass(frozen=True)
class ClusterRestoreReport(Report):
    kind = "restore-cluster"
    timings_s: dict[str, float]

    def sections(self, full: bool) -> list[Section]:
        return [Table("steps", ("step", "seconds"), [(k, f"{v:.1f}") for k, v in self.timings_s.items()])]


class RestoreCluster(BorgAction[RestoreClusterParams]):
    """K3s's own procedure over SSH on the server, with the etcd snapshot from the archive."""

    name = "restore-cluster"
    title = "Restore the cluster"
    description = "K3s cluster reset from the etcd snapshot in a k3s-cluster archive"
    Params = RestoreClusterParams
    nothing_without = "restoring the cluster resets Kubernetes to the snapshot: add --yes"
    guide = (
        "The seed's recovery procedure — this action is steps 2 (etcd snapshot) on the existing server:\n"
        "  1. provision 3 fresh CAX11 nodes (#9)   2. install K3s, restore the etcd snapshot\n"
        "  3. or: fresh K3s + re-apply the manifests from Borg   4. restore the database from pg_dump\n"
        "  5. update DNS to the new LB IP   — estimated 15–30 minutes in all.\n"
        "Here: stop k3s on the server, upload the snapshot, k3s server --cluster-reset, start k3s; each "
        "step is timed below."
    )
    # The lock is held as for any action; the reset replaces the API server's state, the Lease with it, so
    # its renewal fails afterwards (a 409) and its release finds another holder: expected, not a reason
    # to stop half-way through a restore.
    keeps_going_without_lock = True

    def confirm_word(self) -> str:
        return "k3s-cluster"

    async def plan(self, run: Run) -> Plan:
        server = next(n for n in self.config.nodes if n.role == "server")
        steps = (
            "upload the snapshot",
            "systemctl stop k3s",
            "k3s server --cluster-reset",
            "systemctl start k3s",
        )
        return Plan([PlanItem("step", f"{server.name}: {s}") for s in steps])

    async def execute(self, run: Run) -> Outcome:
        config, emit = self.config, run.emit
        server = next(n for n in config.nodes if n.role == "server")
        work = _private_dir("restore-cluster-")
        timings: dict[str, float] = {}
        try:
            t = time.time()
            name, _ = await _latest(config, "cluster", self.env, self.params.archive)
            await _extract(config, "cluster", name, self.env, ["etcd-snapshot"], work)
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
                        if step == "reset":
                            await conn.run("systemctl start k3s", check=False)  # never leave it stopped
                        err = (
                            res.stderr.decode(errors="replace")
                            if isinstance(res.stderr, bytes)
                            else str(res.stderr)
                        )
                        raise ActionFailed(f"{step} on {server.name}: {err.strip()[:200]}")
                    run.step(step, "done", {})
                    emit(StepFinished(step, True, f"{timings[step]:.1f} s"))
                await conn.run(f"rm -f {shlex.quote(remote)}", check=False)
            total = sum(timings.values())
            return Outcome(
                Verdict.DONE, f"cluster restored from {name} in {total:.1f} s", ClusterRestoreReport(timings)
            )
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
