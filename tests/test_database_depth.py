"""``--action status --json`` at ``kubectl cnpg status -v`` depth (#21), against the lab's real PostgreSQL:
the system ID, timeline and current WAL file the primary reports, each replica's sent/write/flush/replay
LSNs and the WAL its replication slot retains — checked against what the primary itself answers."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import psycopg

from lab.cli import control
from lab.state import LabState
from tests.conftest import kubectl_json, opsconsole, wait_for

LSN = re.compile(r"[0-9A-F]+/[0-9A-F]+")


def _status(lab: LabState) -> dict[str, Any]:
    proc = opsconsole(
        "--config", lab.files["console_config"], "--action", "status", "--json", check=False, timeout=120
    )
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def _deep(doc: dict[str, Any]) -> bool:
    """PostgreSQL answered for every instance: the primary's WAL file, each replica streaming, its slot."""
    db = doc.get("database") or {}
    replicas = [r for r in db.get("replication") or [] if r["role"] == "replica"]
    return bool(
        db.get("system_id")
        and db.get("wal_file")
        and replicas
        and all(r["state"] == "streaming" and r["replay_lsn"] and r["slot"] for r in replicas)
    )


def test_status_json_carries_the_databases_depth_from_postgresql(lab: LabState) -> None:
    def settled() -> dict[str, Any] | None:
        doc = _status(lab)
        return doc if _deep(doc) else None

    doc = wait_for(settled, 90, "the status at depth, every instance answering", interval=1)
    db = doc["database"]
    secret = kubectl_json(lab, "get", "secret", "main-db-superuser", "-n", "postgres")
    password = base64.b64decode(secret["data"]["password"]).decode()
    port = control(lab, "GET", "/db")["ports"][db["primary"]]
    dsn = f"host=127.0.0.1 port={port} dbname=postgres user=postgres password={password}"
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(
            "SELECT system_identifier::text, pg_walfile_name(pg_current_wal_lsn()) FROM pg_control_system()"
        ).fetchone()
        assert row is not None
        system_id, wal_now = row
        slots = {name for (name,) in c.execute("SELECT slot_name FROM pg_replication_slots").fetchall()}

    assert db["system_id"] == system_id
    assert all(r["system_id"] == system_id for r in db["replication"] if r["role"] != "unreachable")
    assert re.fullmatch(r"[0-9A-F]{24}", db["wal_file"]) and db["wal_file"] <= wal_now  # WAL only moves on
    assert db["timeline"] == int(db["wal_file"][:8], 16)  # the Cluster's timeline is the WAL file's
    assert LSN.fullmatch(db["current_lsn"]) and db["primary_started_at"]
    primary = next(r for r in db["replication"] if r["role"] == "primary")
    assert {s["name"] for s in primary["slots"]} == slots
    for r in (r for r in db["replication"] if r["role"] == "replica"):
        lsns = [r[k] for k in ("sent_lsn", "write_lsn", "flush_lsn", "replay_lsn")]
        assert all(LSN.fullmatch(x) for x in lsns), r
        sent, write, flush, replay = map(_lsn, lsns)
        assert sent >= write >= flush >= replay, r  # one reading of pg_stat_replication
        assert r["sync_state"] in ("async", "potential", "sync", "quorum") and r["receiver"] == "streaming"
        assert r["slot"] == "_cnpg_" + r["instance"].replace("-", "_") and r["slot"] in slots
        assert isinstance(r["slot_retained_bytes"], int) and r["slot_retained_bytes"] >= 0
    assert db["pooler"]["mode"] == "transaction" and db["pooler"]["paused"] is False
    assert db["disruption_budgets"] is not None  # listed (the lab's CNPG budgets, once it creates them)
