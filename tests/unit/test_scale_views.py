"""What keeps the dashboard answering at 500 nodes and 10,000 pods (bench/dashboard.py --scale measures it):
one pass over the pods per build, a readable spread column, cells updated without re-measuring columns,
and full garbage collections that walk only what is new.  Units over real objects; the same paths run end
to end in the dashboard tests against the lab."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from typing import Any

import pytest
from textual.app import App, ComposeResult

import console.snapshot
from console.gc_policy import YOUNG_THRESHOLD, FreezeSurvivors
from console.model import Node, Snapshot, Workload
from console.snapshot import PodIndex, pod_index
from console.store import ClusterStore
from screens.panels import MATRIX_MAX_NODES, Panel, workloads_rows


def _pod(ns: str, name: str, node: str, ready: bool = True, terminating: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": ns, "name": name, "ownerReferences": [{"name": "rs-abc"}]}
    if terminating:
        meta["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"nodeName": node},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_pod_index_groups_counts_and_keeps_order_across_changes() -> None:
    store = ClusterStore()
    store.replace(
        "pods",
        [
            _pod("b", "p2", "n1"),
            _pod("a", "p9", "n2"),
            _pod("b", "p1", "n1"),
            _pod("a", "x", "n1", terminating=True),
        ],
    )
    memo: dict[str, Any] = {}  # a builder's own (console.snapshot.SnapshotBuilder)
    first = pod_index(store, memo)
    assert [(p.namespace, p.name) for p in first.all] == [("a", "p9"), ("a", "x"), ("b", "p1"), ("b", "p2")]
    assert first.per_node == {"n2": 1, "n1": 2}  # the terminating pod is not counted
    assert [p.name for p in first.by_namespace["b"]] == ["p1", "p2"]
    assert [p["metadata"]["name"] for p in first.raw("a")] == ["p9", "x"]
    assert first.raw("nowhere") == []

    store.apply("pods", "MODIFIED", _pod("b", "p1", "n1", ready=False))  # a status change: order kept
    second = pod_index(store, memo)
    assert [p.name for p in second.all] == ["p9", "x", "p1", "p2"]
    assert not next(p for p in second.all if p.name == "p1").ready
    assert second.all[0] is first.all[0]  # unchanged pods are not converted again

    store.apply("pods", "DELETED", _pod("a", "p9", "n2"))  # one gone and one new, same count: sorted again
    store.apply("pods", "ADDED", _pod("a", "p0", "n2"))
    third = pod_index(store, memo)
    assert [(p.namespace, p.name) for p in third.all] == [("a", "p0"), ("a", "x"), ("b", "p1"), ("b", "p2")]


def _same_index(a: PodIndex, b: PodIndex) -> None:
    assert a.all == b.all
    assert a.by_namespace == b.by_namespace and a.raw_by_namespace == b.raw_by_namespace
    assert a.per_node == b.per_node


def test_pod_index_from_views_redoes_only_what_changed_and_equals_the_full_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each view carries the pod keys written since the previous one; the index built from it must equal
    one built from scratch from the same objects, through status changes, moves between nodes,
    terminations, pods coming and going, a relist and a view the builder never saw."""
    full_passes = []
    real_full = console.snapshot._full_index
    monkeypatch.setattr(console.snapshot, "_full_index", lambda *a: full_passes.append(1) or real_full(*a))
    rng = random.Random(7)
    live = ClusterStore()
    names = [(ns, f"p{i:03d}") for ns in ("a", "b", "c") for i in range(60)]
    live.replace("pods", [_pod(ns, n, f"n{rng.randrange(5)}") for ns, n in names])
    incremental = 0
    memo: dict[str, Any] = {}
    previous: PodIndex | None = None
    for step in range(40):
        for _ in range(rng.randrange(0, 12)):
            ns, n = rng.choice(names)
            live.apply(
                "pods",
                "MODIFIED",
                _pod(ns, n, f"n{rng.randrange(5)}", ready=rng.random() < 0.5, terminating=rng.random() < 0.1),
            )
        if step == 10:  # a pod gone and another come: the full pass
            live.apply("pods", "DELETED", _pod(*names.pop(0), "n0"))
            names.append(("d", "new"))
            live.apply("pods", "ADDED", _pod("d", "new", "n1"))
        if step == 20:
            live.replace("pods", list(live.objects["pods"].values()))  # a relist
        if step == 30:
            live.view()  # a view nobody built from: the next one cannot trust the previous index
        before = len(full_passes)
        kept = None if previous is None else {ns: list(v) for ns, v in previous.by_namespace.items()}
        view = live.view()
        index = pod_index(view, memo)
        incremental += len(full_passes) == before
        fresh = ClusterStore()
        fresh.replace("pods", list(view.objects["pods"].values()))
        _same_index(index, pod_index(fresh))
        if previous is not None:  # copy on write: the index shown before is unchanged by this one
            assert previous.by_namespace == kept
        previous = index
    assert 30 <= incremental < 40  # most builds were incremental; the relist, the churn and the gap not


def _snapshot(node_count: int) -> Snapshot:
    nodes = tuple(Node(f"node-{i:03d}", True, (), (), "v1", "", "", False, 0) for i in range(node_count))
    web = Workload("prod", "web", "deployment", 2, 2, ("node-001", "node-002"))
    return Snapshot("c", "ctx", True, time.time(), nodes=nodes, workloads=(web,))


def test_spread_is_a_full_matrix_on_small_clusters_and_the_holding_nodes_on_large_ones() -> None:
    small = dict(workloads_rows(_snapshot(3)))["prod/web"]
    assert small[4] == "000:0 001:1 002:1" and small[5] == "spread"
    large = dict(workloads_rows(_snapshot(MATRIX_MAX_NODES + 492)))["prod/web"]
    assert large[4] == "001:1 002:1" and large[5] == "spread"


class _OnePanel(App[None]):
    def compose(self) -> ComposeResult:
        yield Panel("nodes")


def _nodes_snapshot(name: str) -> Snapshot:
    return Snapshot("c", "ctx", True, time.time(), nodes=(Node(name, True, (), (), "v1", "", "", False, 3),))


async def test_a_changed_cell_grows_its_column_and_never_shrinks_it() -> None:
    app = _OnePanel()
    async with app.run_test() as pilot:
        panel = app.query_one(Panel)
        panel.show(_nodes_snapshot("n1"), {})
        await pilot.pause()
        column = next(iter(panel.table.columns.values()))
        assert column.content_width == len("node")  # the label is wider than "n1"
        # The row key is the node's name: a new name is a new row; change the cell in place instead.
        key = next(iter(panel.table.rows))
        panel._update_cell(panel.table, key.value, "0", "a-much-longer-node-name")
        await pilot.pause()
        assert column.content_width == len("a-much-longer-node-name")
        panel._update_cell(panel.table, key.value, "0", "n1")
        await pilot.pause()
        assert column.content_width == len("a-much-longer-node-name")
        assert str(panel.table.get_cell(key, "0")) == "n1"


async def test_collections_freeze_their_survivors_and_unfreeze_on_schedule() -> None:
    loop = asyncio.get_running_loop()
    gc.unfreeze()
    survivors = FreezeSurvivors(loop)
    before = gc.get_threshold()
    survivors.install()
    try:
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        gc.collect()  # a full collection: its survivors are frozen on the loop's next turn
        deadline = time.monotonic() + 5
        while survivors.freezes == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert survivors.freezes == 1 and gc.get_freeze_count() > 0
        gc.unfreeze()
        gc.collect(1)  # a middle collection: its survivors too
        deadline = time.monotonic() + 5
        while survivors.freezes == 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert survivors.freezes == 2 and gc.get_freeze_count() > 0
    finally:
        survivors.uninstall()
    assert gc.get_freeze_count() == 0 and survivors._collected not in gc.callbacks
    assert gc.get_threshold() == before

    due = FreezeSurvivors(loop, unfreeze_after_s=0.0)  # due: the next full collection sees everything
    due.install()
    try:
        gc.freeze()
        gc.collect()
        deadline = time.monotonic() + 5
        while gc.get_freeze_count() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert gc.get_freeze_count() == 0 and due.freezes == 0
        due._after_collection(1)  # unfrozen for a full collection: a middle one does not freeze again
        assert gc.get_freeze_count() == 0 and due.freezes == 0
        due._after_collection(2)  # the full collection saw everything: freezing resumes
        assert gc.get_freeze_count() > 0 and due.freezes == 1
    finally:
        due.uninstall()


def test_start_up_runs_without_the_collector_and_settles_frozen() -> None:
    from console.gc_policy import quiet_start, restore, settle

    assert gc.isenabled()
    try:
        quiet_start()
        assert not gc.isenabled()
        settle()
        assert gc.isenabled() and gc.get_freeze_count() > 0
        settle()  # once only
        gc.unfreeze()
        quiet_start()
        restore()  # an in-process caller of main(): back on, nothing frozen
        assert gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
        gc.enable()
