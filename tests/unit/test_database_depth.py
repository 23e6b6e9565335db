"""The Database panel, its detail screen and ``--action status --json`` at ``kubectl cnpg status -v`` depth
(#21): the snapshot built from raw objects (the seed's store), and each database finding raised and not
raised.  No lab."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actions.status import StatusReport, status_lines
from console.config import load_config
from console.detail import ObjectRef, describe, ref_for
from console.model import ReplicationSlot, Severity, Snapshot
from console.snapshot import build
from console.sources.pg import PgSource
from console.store import ClusterStore
from screens.panels import database_rows
from tests.conftest import ROOT
from tests.unit.seed_state import LAG, SYSTEM_ID, budgets, fill, knock_out, pooler

CONFIG = load_config(ROOT / "config.toml")
GIB = 1024**3
Edit = Callable[[ClusterStore], None]


def _cluster(store: ClusterStore, annotations: dict[str, str] | None = None, **status: Any) -> None:
    obj = json.loads(json.dumps(store.objects["clusters"][("postgres", "main-db")]))
    obj["metadata"]["annotations"] = annotations or {}
    obj["status"].update(status)
    store.apply("clusters", "MODIFIED", obj)


def _pod(store: ClusterStore, name: str, edit: Callable[[dict[str, Any]], None]) -> None:
    pod = json.loads(json.dumps(store.objects["pods"][("postgres", name)]))
    edit(pod)
    store.apply("pods", "MODIFIED", pod)


def _replication(store: ClusterStore, instance: str, **changes: Any) -> None:
    rows = store.extra["replication"]
    store.set_extra(
        "replication", tuple(dataclasses.replace(r, **changes) if r.instance == instance else r for r in rows)
    )


def _snap(*edits: Edit, config: Any = CONFIG) -> Snapshot:
    store = ClusterStore()
    fill(store)
    for edit in (budgets, pooler, *edits):
        edit(store)
    return build(store, config, "admin")


def _found(snap: Snapshot, code: str) -> dict[str, tuple[Severity, str]]:
    return {f.subject: (f.severity, f.message) for f in snap.findings if f.code == code}


def _ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


# ---- the snapshot ----------------------------------------------------------------------------------------


def test_the_snapshot_carries_the_cluster_at_cnpg_status_depth() -> None:
    db = _snap().database
    assert db is not None
    assert (db.system_id, db.image) == (SYSTEM_ID, "ghcr.io/cloudnative-pg/postgresql:17.4")
    assert db.primary_since == "2026-11-01T09:06:00.000000Z" and (db.primary_uptime_s or 0) > 86400
    assert db.primary_started_at == "2026-11-01T09:05:45.120000+00:00"
    assert (db.timeline, db.wal_file, db.current_lsn) == (1, "000000010000000000000005", "0/5000060")
    assert (db.switchover, db.hibernated, db.fenced) == (False, False, ())
    one, two = db.members
    assert (one.role, one.status, one.qos, one.node, one.restarts) == (
        "primary",
        "healthy",
        "Burstable",
        "k3s-w1",
        0,
    )
    assert (two.role, two.started_at, two.fenced) == ("replica", "2026-11-01T09:05:40Z", False)
    replica = next(r for r in db.replication if r.role == "replica")
    assert (replica.sent_lsn, replica.write_lsn, replica.flush_lsn, replica.replay_lsn) == (
        "0/5000060", "0/5000060", "0/5000060", "0/4000000",
    )  # fmt: skip
    assert (replica.sync_state, replica.receiver, replica.slot_retained_bytes) == ("async", "streaming", LAG)
    budgets = {b.name: b.disruptions_allowed for b in db.disruption_budgets or ()}
    assert budgets == {"main-db-primary": 0, "main-db": 1}  # DocFast's budget is not the database's
    assert {c.name for c in db.certificates or ()} == {"main-db-ca", "main-db-server", "main-db-replication"}
    assert all(c.days_left is not None and 88.9 <= c.days_left <= 89.1 for c in db.certificates or ())
    assert db.pooler is not None and (db.pooler.mode, db.pooler.paused, db.pooler.instances) == (
        "transaction", False, 2,
    )  # fmt: skip


def test_fencing_hibernation_and_a_switchover_are_read_from_the_cluster() -> None:
    def fenced_all(store: ClusterStore) -> None:
        _cluster(store, {"cnpg.io/fencedInstances": '["*"]', "cnpg.io/hibernation": "on"})

    def switching(store: ClusterStore) -> None:
        _cluster(store, {"cnpg.io/fencedInstances": '["main-db-2"]'}, phase="Switchover in progress",
                 targetPrimary="main-db-2")  # fmt: skip

    db = _snap(fenced_all).database
    assert db is not None and db.fenced == ("main-db-1", "main-db-2") and db.hibernated
    assert all(m.fenced for m in db.members)
    db = _snap(switching).database
    assert db is not None and db.switchover and db.target_primary == "main-db-2"
    assert [m.name for m in db.members if m.fenced] == ["main-db-2"]
    failing = _snap(lambda s: _cluster(s, phase="Failing over", targetPrimary="pending")).database
    assert failing is not None and not failing.switchover


def test_status_json_carries_the_same() -> None:
    doc = json.loads(json.dumps(StatusReport(_snap()).document()))
    db = doc["database"]
    assert (db["system_id"], db["timeline"], db["wal_file"]) == (SYSTEM_ID, 1, "000000010000000000000005")
    assert db["image"].endswith(":17.4") and db["primary_uptime_s"] > 0 and db["primary_started_at"]
    replica = next(r for r in db["replication"] if r["role"] == "replica")
    assert replica["replay_lsn"] == "0/4000000" and replica["sync_state"] == "async"
    assert replica["slot"] == "_cnpg_main_db_2" and replica["slot_retained_bytes"] == LAG
    primary = next(r for r in db["replication"] if r["role"] == "primary")
    assert primary["slots"] == [
        {"name": "_cnpg_main_db_2", "type": "physical", "active": True, "restart_lsn": "0/4000000",
         "retained_bytes": LAG}
    ]  # fmt: skip
    assert [m["qos"] for m in db["members"]] == ["Burstable", "Burstable"]
    assert {b["name"]: b["disruptions_allowed"] for b in db["disruption_budgets"]}["main-db-primary"] == 0
    assert db["pooler"] == {"name": "main-db-pooler", "type": "rw", "instances": 2, "mode": "transaction",
                            "paused": False}  # fmt: skip
    assert {c["name"] for c in db["certificates"]} >= {"main-db-server", "main-db-replication"}
    assert (db["fenced"], db["hibernated"], db["switchover"]) == ([], False, False)


def test_the_status_text_says_each_fact_and_unknown_where_unseen() -> None:
    lines = status_lines(_snap())
    assert any(line.startswith("postgres:") and SYSTEM_ID in line for line in lines)
    assert any(line.startswith("slot:") and "_cnpg_main_db_2" in line for line in lines)
    assert any(line.startswith("pdb:") and "main-db-primary 0 disruptions allowed" in line for line in lines)
    assert any(line.startswith("pooler:") and "transaction, not paused, 2/2" in line for line in lines)
    down = status_lines(_snap(lambda s: knock_out(s, "postgres")))
    assert "postgres:  unknown (PostgreSQL did not answer)" in down
    assert "slot:      unknown (PostgreSQL did not answer)" in down


# ---- the pg source's reading -----------------------------------------------------------------------------


def test_the_pg_answers_become_replication_rows() -> None:
    """What the one status query returns (its shape as PostgreSQL 15 answered it) judged into rows."""
    stream = {
        "name": "main-db-2",
        "state": "streaming",
        "sent_lsn": "0/34A0000",
        "write_lsn": "0/3000000",
        "flush_lsn": "0/3000000",
        "replay_lsn": "0/3000000",
        "write_lag": 0.1,
        "flush_lag": 0.2,
        "replay_lag": 0.3,
        "sync_state": "async",
    }
    slots = [
        {"name": "_cnpg_main_db_2", "type": "physical", "active": True, "restart_lsn": "0/3000000",
         "retained": 6508848},
        {"name": "orphan", "type": "physical", "active": False, "restart_lsn": None, "retained": None},
    ]  # fmt: skip
    primary = {
        "standby": False,
        "system_id": SYSTEM_ID,
        "started_at": "2026-12-02T06:08:17.789543+00:00",
        "lsn": "0/3635130",
        "wal_file": "000000010000000000000003",
        "streams": [stream],
        "slots": slots,
        "receiver": None,
    }
    replica = {
        "standby": True,
        "system_id": SYSTEM_ID,
        "started_at": "2026-12-02T06:08:18+00:00",
        "lsn": "0/3000000",
        "wal_file": None,
        "streams": None,
        "slots": None,
        "receiver": None,
    }
    one, two = PgSource._judge({"main-db-1": primary, "main-db-2": replica})
    assert (one.role, one.wal_file, one.system_id) == ("primary", "000000010000000000000003", SYSTEM_ID)
    assert [s.retained_bytes for s in one.slots] == [6508848, None]  # a slot reserving no WAL: unknown
    assert (two.state, two.receiver, two.lag_bytes) == ("streaming", "stopped", 0x3635130 - 0x3000000)
    assert (two.sent_lsn, two.write_lag_s, two.flush_lag_s, two.lag_seconds) == ("0/34A0000", 0.1, 0.2, 0.3)
    assert (two.slot, two.slot_retained_bytes) == ("_cnpg_main_db_2", 6508848)  # CNPG's name for it
    hidden = {**replica, "receiver": {"status": None, "slot": None}}  # a role without pg_read_all_stats
    _, unread = PgSource._judge({"main-db-1": primary, "main-db-2": hidden})
    assert (unread.receiver, unread.state) == (None, "streaming")  # unknown, not "stopped"
    (alone,) = PgSource._judge({"main-db-2": replica})
    assert (alone.state, alone.lag_bytes, alone.slot, alone.sent_lsn) == ("stopped", None, None, None)


# ---- findings --------------------------------------------------------------------------------------------


def test_no_database_finding_in_the_seed_state() -> None:
    snap = _snap()
    for code in ("db-slot-retention", "db-single-node", "db-instance-fenced", "db-primary-restarted",
                 "replica-not-streaming"):  # fmt: skip
        assert not _found(snap, code), code


def test_a_slot_retaining_more_than_the_bound_is_a_finding() -> None:
    def orphan(store: ClusterStore) -> None:
        slot = ReplicationSlot("_cnpg_main_db_3", "physical", False, "0/1000000", 3 * GIB)
        rows = store.extra["replication"]
        _replication(store, "main-db-1", slots=(*rows[0].slots, slot))

    found = _found(_snap(orphan), "db-slot-retention")
    assert found == {"_cnpg_main_db_3": (Severity.WARNING, found["_cnpg_main_db_3"][1])}
    assert "inactive" in found["_cnpg_main_db_3"][1] and "3.0 GiB" in found["_cnpg_main_db_3"][1]
    tight = CONFIG.model_copy(
        update={"database": CONFIG.database.model_copy(update={"max_slot_retained_bytes": 1024})}
    )
    assert set(_found(_snap(config=tight), "db-slot-retention")) == {"_cnpg_main_db_2"}  # 16 MiB > 1 KiB


def test_instances_on_one_node_are_a_finding_naming_them() -> None:
    found = _found(
        _snap(lambda s: _pod(s, "main-db-2", lambda p: p["spec"].update(nodeName="k3s-w1"))), "db-single-node"
    )
    assert found == {"main-db": (Severity.WARNING, "instances share a node: main-db-1, main-db-2 on k3s-w1")}


def test_a_fenced_instance_is_a_finding_and_a_fenced_primary_critical() -> None:
    replica = _found(
        _snap(lambda s: _cluster(s, {"cnpg.io/fencedInstances": '["main-db-2"]'})), "db-instance-fenced"
    )
    assert list(replica) == ["main-db-2"] and replica["main-db-2"][0] is Severity.WARNING
    every = _found(_snap(lambda s: _cluster(s, {"cnpg.io/fencedInstances": '["*"]'})), "db-instance-fenced")
    assert {k: v[0] for k, v in every.items()} == {
        "main-db-1": Severity.CRITICAL,
        "main-db-2": Severity.WARNING,
    }


def test_a_wal_receiver_down_is_one_finding_not_two() -> None:
    """The replica's own receiver stopped while the primary still lists its sender: replica-not-streaming,
    once, in the receiver's words (the sender's view agrees a moment later; still one finding)."""
    snap = _snap(lambda s: _replication(s, "main-db-2", receiver="stopped"))
    receiver = [f for f in snap.findings if f.subject == "main-db-2" and "receiver" in f.message]
    assert [(f.code, f.severity, f.message) for f in receiver] == [
        ("replica-not-streaming", Severity.CRITICAL, "WAL receiver is stopped")
    ]
    both = _snap(lambda s: _replication(s, "main-db-2", receiver="stopped", state="stopped"))
    assert len([f for f in both.findings if f.code == "replica-not-streaming"]) == 1
    sender = _found(_snap(lambda s: _replication(s, "main-db-2", state="catchup")), "replica-not-streaming")
    assert sender == {"main-db-2": (Severity.CRITICAL, "the primary's WAL sender is catchup")}


def _container_started(minutes: float) -> Edit:
    def edit(store: ClusterStore) -> None:
        running = {"running": {"startedAt": _ago(minutes=minutes)}}
        _pod(store, "main-db-1", lambda p: p["status"]["containerStatuses"][0].update(state=running))

    return edit


@pytest.mark.parametrize(
    ("edit", "raised"),
    [
        (lambda s: _replication(s, "main-db-1", started_at=_ago(minutes=10)), True),
        (_container_started(5), True),
        (lambda s: _replication(s, "main-db-2", started_at=_ago(minutes=10)), False),  # a replica's restart
        (lambda s: _replication(s, "main-db-1", started_at=_ago(hours=2)), False),
        (lambda s: knock_out(s, "postgres"), False),  # neither known: no finding (and "?" on the panel)
    ],
    ids=["postmaster", "container", "replica", "two-hours-ago", "unknown"],
)
def test_a_primary_restarted_in_the_last_hour_is_a_finding(edit: Edit, raised: bool) -> None:
    found = _found(_snap(edit), "db-primary-restarted")
    assert (list(found) == ["main-db-1"]) is raised and (bool(found) is raised)
    if raised:
        assert found["main-db-1"][0] is Severity.WARNING and "min ago" in found["main-db-1"][1]


# ---- the panel and the detail screen --------------------------------------------------------------------


def test_the_panel_shows_the_depth_and_unknown_as_unknown() -> None:
    rows = dict(database_rows(_snap()))
    assert rows["main-db"][4:6] == ("timeline 1", "LSN 0/5000060")
    assert rows["main-db"][6].startswith(f"healthy · WAL 000000010000000000000005 · sysid {SYSTEM_ID}")
    assert rows["main-db-2"][4] == "streaming" and "async · slot 16.0 MiB" in rows["main-db-2"][6]
    assert "Burstable · 0 restarts" in rows["main-db-1"][6]
    assert rows["pdb:main-db-primary"][3] == "0 allowed"
    assert rows["pooler:main-db-pooler"][6] == "rw · transaction · not paused"
    assert rows["certs:main-db"][3] == "89 d"
    assert (
        "PAUSED" in dict(database_rows(_snap(lambda s: pooler(s, paused=True))))["pooler:main-db-pooler"][6]
    )

    def unseen(store: ClusterStore) -> None:
        knock_out(store, "postgres")
        del store.objects["poddisruptionbudgets"]
        _pod(store, "main-db-1", lambda p: p["status"].pop("containerStatuses"))

    rows = dict(database_rows(_snap(unseen)))
    assert "sysid ?" in rows["main-db"][6] and rows["main-db"][5] == "LSN ?"
    assert "? restarts" in rows["main-db-1"][6] and "0 restarts" not in rows["main-db-1"][6]
    assert rows["pdb:main-db"][3] == "?"


def test_each_database_row_opens_its_object() -> None:
    snap = _snap()
    ref = {key: ref_for("database", key, snap, "postgres") for key, _ in database_rows(snap)}
    assert ref["main-db"] == ref["certs:main-db"] == ObjectRef("Cluster", "main-db", "postgres")
    assert ref["pdb:main-db-primary"] == ObjectRef("PodDisruptionBudget", "main-db-primary", "postgres")
    assert ref["pooler:main-db-pooler"] == ObjectRef("Pooler", "main-db-pooler", "postgres")
    assert ref["main-db-2"] == ObjectRef("Pod", "main-db-2", "postgres")


async def test_the_detail_screen_describes_the_cluster_and_an_instance_in_depth() -> None:
    store = ClusterStore()
    fill(store)
    budgets(store)
    pooler(store)
    snap = build(store, CONFIG, "admin")
    cluster = await describe(None, ObjectRef("Cluster", "main-db", "postgres"), snap, store.objects)
    sections = {s.title: s for s in cluster.sections}
    assert {"Database cluster", "Instances", "Streaming replication", "Replication slots", "Certificates",
            "PodDisruptionBudgets", "Pooler"} <= set(sections)  # fmt: skip
    facts = dict(sections["Database cluster"].rows)
    assert facts["System ID"] == SYSTEM_ID and facts["Current WAL file"] == "000000010000000000000005"
    assert facts["Primary since"].startswith("2026-11-01T09:06:00") and "(uptime " in facts["Primary since"]
    (row,) = sections["Streaming replication"].rows
    lsns = ("0/5000060", "0/5000060", "0/5000060", "0/4000000")
    assert row[:8] == ("main-db-2", "streaming", "streaming", "async", *lsns)
    pod = await describe(None, ObjectRef("Pod", "main-db-2", "postgres"), snap, store.objects)
    instance = dict(next(s for s in pod.sections if s.title == "Database instance").rows)
    assert instance["Sent / write / flush / replay LSN"] == "0/5000060 / 0/5000060 / 0/5000060 / 0/4000000"
    assert instance["Slot"] == "_cnpg_main_db_2, retains 16.0 MiB" and instance["CNPG status"] == "healthy"
    budget = await describe(
        None, ObjectRef("PodDisruptionBudget", "main-db-primary", "postgres"), snap, store.objects
    )
    assert [s.title for s in budget.sections][-1] == "PodDisruptionBudgets"
