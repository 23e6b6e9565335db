"""The console's judgements, as pure functions of data: findings, outage windows, a drill's preflight,
secret redaction, the snapshot builders' memos under concurrent builds.  No lab."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from actions.drill_checks import preflight, spread_broken, steady_state
from actions.drill_scenarios import SCENARIOS
from console.config import load_config
from console.events import ProbeSample
from console.journal import Journal, redact
from console.model import Finding, Severity, Snapshot
from console.outages import longest, outages
from console.snapshot import SnapshotBuilder, build
from console.store import ClusterStore
from tests.conftest import ROOT
from tests.unit.seed_state import fill

CONFIG = load_config(ROOT / "config.toml")


def _snap(edit: object = None) -> Snapshot:
    store = ClusterStore()
    fill(store)
    if callable(edit):
        edit(store)
    return build(store, CONFIG, "admin")


def _codes(snap: Snapshot) -> dict[tuple[str, str], Severity]:
    return {(f.code, f.subject): f.severity for f in snap.findings}


# ---- findings ------------------------------------------------------------------------------------------


def test_the_seed_state_has_the_findings_an_operator_expects() -> None:
    found = _codes(_snap())
    assert found[("backup-overdue", "k3s-db")] is Severity.CRITICAL  # the db backup is 9.5 h old, due 6 h
    assert found[("replica-lag", "main-db-2")] is Severity.WARNING
    assert found[("ha-drift", "Deployment kube-system/coredns")] is Severity.WARNING
    assert found[("weak-db-credentials", "docfast-db-credentials")] is Severity.WARNING
    assert ("node-not-ready", "k3s-w1") not in found


def _node_down(store: ClusterStore) -> None:
    node = store.objects["nodes"][("", "k3s-w1")]
    down = json.loads(json.dumps(node))
    down["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    store.apply("nodes", "MODIFIED", down)


def _prod_down(store: ClusterStore) -> None:
    probes = store.extra["probes"]
    store.set_extra("probes", (dataclasses.replace(probes[0], ok=False, status=503), *probes[1:]))


def _targets_down(store: ClusterStore) -> None:
    lb = store.extra["hetzner"]["load_balancer"]
    for t in lb["targets"]:
        t["health"] = [(80, "unhealthy"), (443, "unhealthy")]


@pytest.mark.parametrize(
    ("edit", "code", "subject", "severity"),
    [
        (_node_down, "node-not-ready", "k3s-w1", Severity.CRITICAL),
        (_prod_down, "health-check-failing", "https://docfast.dev/health", Severity.CRITICAL),
        (_targets_down, "lb-no-healthy-target", "k3s-lb", Severity.CRITICAL),
    ],
    ids=["node", "prod-probe", "load-balancer"],
)
def test_a_fault_becomes_its_finding(edit: object, code: str, subject: str, severity: Severity) -> None:
    assert _codes(_snap(edit)).get((code, subject)) is severity


def test_findings_are_sorted_worst_first() -> None:
    order = [f.severity for f in _snap(_node_down).findings]
    rank = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
    assert order == sorted(order, key=rank.__getitem__) and isinstance(_snap().findings[0], Finding)


# ---- outage windows ------------------------------------------------------------------------------------


def _samples(pattern: str, step: float = 0.5) -> list[ProbeSample]:
    return [ProbeSample("http-prod", c == "+", 1.0, at=100 + i * step) for i, c in enumerate(pattern)]


@pytest.mark.parametrize(
    ("pattern", "windows", "worst"),
    [
        ("+++++", [], 0.0),
        ("++--++", [(101.0, 102.0)], 1.0),  # from the first failure to the next success
        ("+-+---+", [(100.5, 101.0), (101.5, 103.0)], 1.5),
        ("++---", [(101.0, 102.0)], 1.0),  # an unfinished outage ends at its last sample
    ],
)
def test_outage_windows_run_from_the_first_failure_to_the_next_success(
    pattern: str, windows: list[tuple[float, float]], worst: float
) -> None:
    samples = list(reversed(_samples(pattern)))  # order of arrival does not matter: send times do
    assert outages(samples, "http-prod") == windows and longest(samples, "http-prod") == worst
    assert outages(samples, "db-write") == []


# ---- a drill's preflight -------------------------------------------------------------------------------


def _healthy(store: ClusterStore) -> None:
    """The seed's state without its overdue backup and its lagging replica."""
    store.set_extra(
        "backups", tuple(dataclasses.replace(b, overdue=False, age_hours=1.0) for b in store.extra["backups"])
    )
    store.set_extra(
        "replication", tuple(dataclasses.replace(r, lag_bytes=0) for r in store.extra["replication"])
    )


def test_the_preflight_passes_a_healthy_cluster_and_names_what_fails() -> None:
    scenario = SCENARIOS["node-down"]
    snap = _snap(_healthy)
    checks = {c.name: c for c in preflight(scenario, "k3s-w1", snap, CONFIG)}
    assert all(c.ok for c in checks.values()), [c for c in checks.values() if not c.ok]
    assert {"target", "nodes-ready", "lb-targets-healthy", "cnpg-healthy", "prod-healthy"} <= set(checks)
    assert not checks["backup-fresh"].critical  # the one --force may run past

    bad = {c.name: c for c in preflight(scenario, "k3s-w9", _snap(_node_down), CONFIG)}
    assert not bad["target"].ok and "k3s-w9" in bad["target"].why and bad["target"].critical
    assert not bad["nodes-ready"].ok and "k3s-w1" in bad["nodes-ready"].why
    overdue = {c.name: c for c in preflight(scenario, "k3s-w1", _snap(), CONFIG)}["backup-fresh"]
    assert not overdue.ok and not overdue.critical


def test_default_targets_are_the_ones_worth_drilling() -> None:
    snap = _snap()
    assert SCENARIOS["node-down"].targets(snap, CONFIG)[0] == "k3s-w1"  # the primary's node first
    assert SCENARIOS["db-primary-kill"].targets(snap, CONFIG) == ["main-db-1"]
    assert SCENARIOS["db-switchover"].targets(snap, CONFIG) == ["main-db-2"]
    assert set(SCENARIOS["pooler-kill"].targets(snap, CONFIG)) == {
        "main-db-pooler-77f-x1",
        "main-db-pooler-77f-y2",
    }


def test_steady_state_names_every_gap() -> None:
    gaps = steady_state(_snap(_node_down), CONFIG)
    assert "node k3s-w1 not Ready" in gaps
    assert spread_broken(_snap(), CONFIG) == []


# ---- secrets ---------------------------------------------------------------------------------------------


def test_secret_looking_keys_are_redacted_at_any_depth() -> None:
    value = {"token": "t0p", "nested": [{"DB_PASSWORD": "x", "user": "docfast"}], "Authorization": "Bearer y"}
    assert redact(value) == {
        "token": "***",
        "nested": [{"DB_PASSWORD": "***", "user": "docfast"}],
        "Authorization": "***",
    }


def test_the_journal_and_its_audit_log_never_hold_a_secret(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    action = journal.begin("backup", {"passphrase": "hunter2", "what": "db"}, "me@here")
    journal.step(action, "upload", "fault-applied", {"key": "x", "private_key": "-----BEGIN"})
    journal.finish(action, "done", {"token": "abc"})
    entry = journal.get(action)
    journal.close()
    written = (tmp_path / "audit.log").read_text() + json.dumps(entry.__dict__ if entry else {})
    assert "hunter2" not in written and "BEGIN" not in written and "abc" not in written
    assert entry is not None and entry.params == {"passphrase": "***", "what": "db"}


# ---- the snapshot builders' memos ------------------------------------------------------------------------


def test_concurrent_builds_with_their_own_memos_equal_a_fresh_build() -> None:
    """The dashboard builds from views in a thread while a drill builds from the live store on the loop:
    each builder has its own memo, so no build can change what another is reading."""
    live = ClusterStore()
    fill(live)
    expected = build(live, CONFIG, CONFIG.kubernetes.context)
    builders = [SnapshotBuilder(CONFIG) for _ in range(4)]
    results: list[Snapshot] = []
    errors: list[BaseException] = []

    def work(builder: SnapshotBuilder, views: bool) -> None:
        try:
            for _ in range(30):
                results.append(builder.build(live.view() if views else live))
        except BaseException as exc:  # the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(b, i % 2 == 0)) for i, b in enumerate(builders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == 120

    def strip(s: Snapshot) -> Snapshot:  # when it was built, and since when each HA item holds
        return dataclasses.replace(s, taken_at=0.0, ha=tuple(dataclasses.replace(h, since=0.0) for h in s.ha))

    assert all(strip(r) == strip(expected) for r in results)


def test_an_action_still_running_is_not_unfinished_and_a_dead_consoles_is(tmp_path: Path) -> None:
    """A drill another console runs right now is the lock's business (and must never be "recovered");
    one whose console died is unfinished."""
    import os
    import socket

    from console.journal import running_holder

    journal = Journal(tmp_path)
    live = journal.begin("drill", {}, running_holder())  # this very process
    dead = journal.begin("drill", {}, f"me@{socket.gethostname()} pid 999999999")
    old = journal.begin("drill", {}, "me@elsewhere")  # an entry that says no process: unfinished
    try:
        assert {e.id for e in journal.unfinished()} == {dead, old}
        entry = journal.get(live)
        assert entry is not None and entry.process() == (socket.gethostname(), os.getpid()) and entry.alive()
    finally:
        journal.close()


# ---- pods --------------------------------------------------------------------------------------------


def _bad_pod(ns: str, name: str, **status: object) -> dict[str, object]:
    return {
        "metadata": {"namespace": ns, "name": name, "ownerReferences": [{"name": f"{name}-rs"}],
                     "creationTimestamp": "2026-12-01T10:00:00Z"},
        "spec": {"nodeName": "k3s-w1", "containers": [{"name": "app"}]},
        "status": {"phase": "Running", **status},
    }  # fmt: skip


def test_each_way_a_pod_goes_wrong_is_a_finding_naming_it() -> None:
    from datetime import UTC, datetime, timedelta

    recent = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def waiting(reason: str, restarts: int = 0, last: dict[str, object] | None = None) -> dict[str, object]:
        cs: dict[str, object] = {
            "name": "app",
            "ready": False,
            "restartCount": restarts,
            "state": {"waiting": {"reason": reason}},
        }
        if last:
            cs["lastState"] = {"terminated": last}
        return {"containerStatuses": [cs]}

    def edit(store: ClusterStore) -> None:
        pods = list(store.objects["pods"].values())
        pods.append(
            _bad_pod(
                "docfast",
                "crashy",
                **waiting("CrashLoopBackOff", 7, {"reason": "Error", "exitCode": 1, "finishedAt": recent}),
            )
        )
        pods.append(_bad_pod("docfast-staging", "pully", **waiting("ImagePullBackOff")))
        pods.append(
            _bad_pod(
                "docfast-staging",
                "hungry",
                containerStatuses=[
                    {
                        "name": "app",
                        "ready": True,
                        "restartCount": 1,
                        "state": {"running": {}},
                        "lastState": {
                            "terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": recent}
                        },
                    }
                ],
            )
        )
        stuck = _bad_pod(
            "docfast-staging",
            "stuck",
            phase="Pending",
            conditions=[
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 node(s) did not match the selector.",
                }
            ],
        )
        stuck["spec"] = {"containers": [{"name": "app"}]}
        pods.append(stuck)
        store.replace("pods", pods)

    found = _codes(_snap(edit))
    assert found[("pod-crash-looping", "docfast/crashy")] is Severity.CRITICAL  # production's
    assert found[("pod-image-pull-failing", "docfast-staging/pully")] is Severity.WARNING
    assert found[("pod-oom-killed", "docfast-staging/hungry")] is Severity.WARNING
    assert found[("pod-unschedulable", "docfast-staging/stuck")] is Severity.WARNING
    snap = _snap(edit)
    crashy = next(p for p in snap.pods if p.name == "crashy")
    assert (crashy.waiting, crashy.last_terminated, crashy.containers) == ("CrashLoopBackOff", "Error 1", 1)

    from screens.panels import pods_rows

    rows = pods_rows(snap)
    worst = ["docfast/crashy", "docfast-staging/pully", "docfast-staging/stuck", "docfast-staging/hungry"]
    assert [k for k, _ in rows[:4]] == worst
    assert rows[0][1][8] == "CrashLoopBackOff" and rows[0][1][7].startswith("7 (")
    assert [k for k, _ in pods_rows(snap, "hungry")] == ["docfast-staging/hungry"]
    in_prod = [k for k, _ in pods_rows(snap, "", "docfast")]  # the N key's namespace filter
    assert in_prod[0] == "docfast/crashy" and all(k.startswith("docfast/") for k in in_prod)

    from console.detail import REPOSITORY, ObjectRef, describe, ref_for

    assert ref_for("backups", "k3s-db", snap, "postgres") == ObjectRef(REPOSITORY, "k3s-db")
    import asyncio

    repo = snap.backups[0]
    d = asyncio.run(describe(None, ObjectRef(REPOSITORY, repo.name), snap))
    fields = dict(d.sections[0].rows)
    assert (
        fields["Holds"] == repo.what
        and fields["Schedule"] == repo.schedule
        and f"name: {repo.name}" in d.yaml()
    )
