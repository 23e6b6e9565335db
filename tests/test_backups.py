"""Backup and restore against the lab's Storage Box (real Borg over SSH) and real PostgreSQL.

One lab of its own: these tests write archives, restore databases and reset the cluster.  The real
`borg` CLI (the lab's borg.env) is the witness of what landed on the Storage Box.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lab.cli import control
from lab.state import LabState
from lab.storagebox import retained
from tests.conftest import (
    ROOT,
    edited_config,
    env_file,
    kubectl,
    kubectl_json,
    opsconsole,
    own_lab,
    pgserver_bin,
    through_pooler,
    wait_for,
)


@pytest.fixture(scope="module")
def box_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    # PostgreSQL 16 (newer than this machine's Debian 15 tools): every dump and restore here runs in the
    # instance pods, with the server's own binaries, as on the seed's 17.
    with own_lab(tmp_path_factory, "backup-lab", postgres_bin=pgserver_bin()) as state:
        yield state


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Receipts, check results and the journal of this test's own (they show on every dashboard)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def _action(
    lab: LabState, *args: str, timeout: float = 300, config: Path | None = None
) -> tuple[int, list[dict[str, Any]], str]:
    cfg = str(config or lab.files["console_config"])
    proc = opsconsole("--config", cfg, "--action", *args, "--json", check=False, timeout=timeout)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events, proc.stdout + proc.stderr


def _borg(lab: LabState, *args: str) -> Any:
    """The real borg CLI with the lab's environment (a client cache of its own)."""
    env = {**os.environ, **{k: v.strip("'") for k, v in env_file(lab.files["borg_env"]).items()}}
    env["BORG_BASE_DIR"] = os.path.join(lab.dir, "witness-borg")
    out = subprocess.run(["borg", *args], env=env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout) if "--json" in args or "--json-lines" in args else out.stdout


def _db_repo(lab: LabState) -> str:
    return env_file(lab.files["borg_env"])["BORG_DB_REPO"].strip("'")


def _pooler(lab: LabState, dbname: str) -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] = through_pooler(lab, dbname)
    return conn


def test_backup_db_lands_both_dumps_in_a_new_archive(box_lab: LabState) -> None:
    before = _borg(box_lab, "list", "--json", "--last", "1", _db_repo(box_lab))["archives"][0]["name"]
    code, events, output = _action(box_lab, "backup", "--what", "db")
    assert code == 0, output[-3000:]
    archive = events[-1]["report"]["backups"][0]["archive"]
    assert archive != before
    assert events[-1]["report"]["backups"][0]["primary"] == "main-db-1"
    # By default pg_dump runs in the streaming replica's pod (exec), where the server's binaries are.
    assert events[-1]["report"]["backups"][0]["dump_via"] == "exec"
    assert events[-1]["report"]["backups"][0]["dumped_from"]["instance"] == "main-db-2"
    assert events[-1]["report"]["backups"][0]["dumped_from"]["role"] == "replica"
    latest = _borg(box_lab, "list", "--json", "--last", "1", _db_repo(box_lab))["archives"][0]["name"]
    assert latest == archive
    files = set(_borg(box_lab, "list", "--short", f"{_db_repo(box_lab)}::{archive}").split())
    assert {"docfast.dump", "docfast_staging.dump", "meta.json"} <= files

    # The archive list shows it first, with the sizes and file count borg itself reports for it.
    code, events, output = _action(box_lab, "archives")
    assert code == 0, output[-3000:]
    newest = events[-1]["report"]["k3s-db"]["archives"][0]
    witness = _borg(box_lab, "info", "--json", f"{_db_repo(box_lab)}::{archive}")["archives"][0]["stats"]
    assert newest["name"] == archive and newest["nfiles"] == len(files) == witness["nfiles"]
    assert newest["original_size"] == witness["original_size"] > newest["deduplicated_size"]
    assert len(events[-1]["report"]["k3s-cluster"]["archives"]) >= 5


def test_verify_restore_matches_counts_and_finds_the_sentinel(box_lab: LabState) -> None:
    code, events, output = _action(box_lab, "verify-restore")
    assert code == 0, output[-3000:]
    receipt = events[-1]["report"]
    assert (
        receipt["ok"] and receipt["sentinel_found"] and not receipt["mismatched"] and receipt["tables"] >= 3
    )
    assert receipt["rto_s"] > 0 and receipt["rpo_s"] >= 0
    assert Path(events[-1]["report_path"]).exists()
    # The scratch database is gone again.
    with _pooler(box_lab, "docfast") as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'opsconsole_verify_%'"
        ).fetchall()
    assert rows == []


def test_local_tools_older_than_the_server_are_refused_in_one_sentence(
    box_lab: LabState, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """This lab's server is PostgreSQL 16 and this machine's tools are Debian's 15 — the seed's 17 against
    a Debian 12 machine: the exec path (every other test here) dumps and restores it with the server's
    own binaries; ``dump_via = "local"`` refuses before anything is written."""
    version = kubectl(
        box_lab, "-n", "postgres", "exec", "main-db-1", "--", "psql", "-Atc", "show server_version"
    )
    assert version.stdout.startswith("16."), version.stdout
    cfg = edited_config(
        box_lab, tmp_path_factory, "local-tools", lambda raw: raw["database"].update(dump_via="local")
    )
    before = _borg(box_lab, "list", "--json", _db_repo(box_lab))["archives"]
    code, events, output = _action(box_lab, "backup", "--what", "db", config=cfg)
    assert code == 1, output[-3000:]
    sentence = "pg_dump 15 cannot work with PostgreSQL 16, which is newer: install postgresql-client-16"
    assert sentence in events[-1]["summary"] and "Traceback" not in output, output[-3000:]
    assert _borg(box_lab, "list", "--json", _db_repo(box_lab))["archives"] == before
    code, events, output = _action(box_lab, "verify-restore", config=cfg)
    assert code == 1 and "pg_restore 15 cannot work with PostgreSQL 16" in events[-1]["summary"], output


def test_deleted_staging_rows_come_back_and_production_needs_confirmation(box_lab: LabState) -> None:
    code, _, output = _action(box_lab, "backup", "--what", "db")
    assert code == 0, output[-2000:]
    with _pooler(box_lab, "docfast_staging") as conn:
        before = conn.execute("SELECT count(*) FROM customers").fetchone()
        conn.execute("DELETE FROM usage_events")
        conn.execute("DELETE FROM documents")
        conn.execute("DELETE FROM api_keys")
        conn.execute("DELETE FROM customers")
    code, _, output = _action(
        box_lab, "restore", "--db", "docfast_staging", "--into", "docfast_staging", "--yes"
    )
    assert code == 0, output[-3000:]
    with _pooler(box_lab, "docfast_staging") as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == before
    code, _, output = _action(box_lab, "restore", "--db", "docfast", "--into", "docfast", "--yes")
    assert code == 2 and "--i-mean-production" in output


def test_production_restore_keeps_a_safety_archive_first(box_lab: LabState) -> None:
    """Into production only with the explicit flag, and only after the current state is archived (streamed,
    as every dump): the deleted rows come back, and the safety archive holds what production was."""
    code, _, output = _action(box_lab, "backup", "--what", "db")
    assert code == 0, output[-2000:]
    with _pooler(box_lab, "docfast") as conn:
        before = conn.execute("SELECT count(*) FROM usage_events").fetchone()
        conn.execute("DELETE FROM usage_events")
    code, events, output = _action(
        box_lab, "restore", "--db", "docfast", "--into", "docfast", "--yes", "--i-mean-production"
    )
    assert code == 0, output[-3000:]
    with _pooler(box_lab, "docfast") as conn:
        assert conn.execute("SELECT count(*) FROM usage_events").fetchone() == before
    safety = next(
        e["detail"].split()[0]
        for e in events
        if e.get("kind") == "StepFinished" and e.get("step") == "safety"
    )
    assert safety.startswith("safety-docfast-")
    files = _borg(box_lab, "list", "--short", f"{_db_repo(box_lab)}::{safety}").split()
    assert files == ["docfast.dump"]
    names = [a["name"] for a in _borg(box_lab, "list", "--json", _db_repo(box_lab))["archives"]]
    assert safety in names


def test_storage_box_unreachable_mid_backup(box_lab: LabState) -> None:
    latest = _borg(box_lab, "list", "--json", "--last", "1", _db_repo(box_lab))["archives"][0]["name"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opsconsole",
            "--config",
            box_lab.files["console_config"],
            "--action",
            "backup",
            "--what",
            "db",
            "--json",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the dumps are taken: now the Storage Box goes away
            if '"StepFinished"' in line and '"dump"' in line:
                control(box_lab, "POST", "/storagebox", {"reachable": False})
                break
        out, err = proc.communicate(timeout=120)
    finally:
        control(box_lab, "POST", "/storagebox", {"reachable": True})
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out[-2000:] + err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and "unreachable" in lines[0].lower() and "Traceback" not in err
    wait_for(lambda: control(box_lab, "GET", "/storagebox").get("reachable"), 10, "the Storage Box back")
    assert _borg(box_lab, "list", "--json", "--last", "1", _db_repo(box_lab))["archives"][0]["name"] == latest


def test_a_locked_repository_fails_clearly_or_is_waited_for(box_lab: LabState) -> None:
    control(box_lab, "POST", "/storagebox", {"lock": "k3s-db"})
    try:
        code, _, output = _action(box_lab, "backup", "--what", "db")
        assert code == 1 and "locked" in output and "--lock-wait" in output, output[-2000:]
        proc = subprocess.Popen(
            [sys.executable, "-m", "opsconsole", "--config", box_lab.files["console_config"], "--action",
             "backup", "--what", "db", "--lock-wait", "120", "--json"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        )  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:  # borg create is waiting for the lock now: release it
            if '"StepStarted"' in line and '"upload"' in line:
                control(box_lab, "POST", "/storagebox", {"unlock": "k3s-db"})
                break
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out[-2000:] + err
    finally:
        control(box_lab, "POST", "/storagebox", {"unlock": "k3s-db"})


def test_cluster_backup_then_restore_brings_a_deleted_deployment_back(box_lab: LabState) -> None:
    code, _, output = _action(box_lab, "backup", "--what", "cluster")
    assert code == 0, output[-3000:]
    kubectl(box_lab, "delete", "deployment", "-n", "docfast-staging", "docfast")
    assert (
        kubectl(box_lab, "get", "deployment", "-n", "docfast-staging", "docfast", check=False).returncode != 0
    )
    code, events, output = _action(box_lab, "restore-cluster", "--yes")
    assert code == 0, output[-3000:]
    assert set(events[-1]["report"]["timings_s"]) == {"extract", "upload", "stop", "reset", "start"}
    deploy = kubectl_json(box_lab, "get", "deployment", "-n", "docfast-staging", "docfast")
    assert deploy["metadata"]["name"] == "docfast"
    wait_for(
        lambda: (
            kubectl_json(box_lab, "get", "deployment", "-n", "docfast-staging", "docfast")["status"].get(
                "readyReplicas"
            )
            == 1
        ),
        60,
        "staging ready again",
    )


async def test_tui_restore_needs_the_typed_name(box_lab: LabState) -> None:
    from console.config import load_config
    from screens.app import Dashboard
    from tests.test_dashboard import _runner, _type_refused, _until

    app = Dashboard(load_config(Path(box_lab.files["console_config"])))
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await _runner(pilot, "restore")
        await _type_refused(pilot, screen, "docfast")  # the wrong name: nothing runs
        await pilot.press(*"docfast_staging", "enter")
        await _until(pilot, lambda: screen.result is not None, 180, "the restore's result")
        assert screen.result is not None and screen.result.verdict == "DONE", screen.result


def _db_archives(box_lab: LabState) -> dict[datetime, str]:
    archives = _borg(box_lab, "list", "--json", "--glob-archives", "db-*", _db_repo(box_lab))["archives"]
    return {datetime.fromisoformat(a["start"]).replace(tzinfo=UTC): a["name"] for a in archives}


def _kept(archives: dict[datetime, str]) -> set[str]:
    return {archives[t] for t in retained(list(archives), 7, 4)}


def test_prune_keeps_exactly_seven_daily_and_four_weekly(box_lab: LabState) -> None:
    # The lab's schedules keep writing archives (every 6 hours of wall time), so a run that straddles a
    # tick sees one archive more than the listing taken before it: the expectation follows the listing.
    for _ in range(3):
        before = _db_archives(box_lab)
        code, events, output = _action(box_lab, "prune", "--dry-run")
        if _db_archives(box_lab) == before:
            break
    assert code == 0, output[-3000:]
    plan = events[-1]["report"]["prune"]["k3s-db"]
    assert set(plan["keep"]) == _kept(before) and set(plan["prune"]) == set(before.values()) - _kept(before)
    before = _db_archives(box_lab)
    code, events, output = _action(box_lab, "prune")
    assert code == 0, output[-3000:]
    after = _db_archives(box_lab)
    new = {t: n for t, n in after.items() if t not in before}
    # A tick before the prune's own listing is pruned with the rest; one after it is simply kept.
    assert set(after.values()) in (_kept(before | new), _kept(before) | set(new.values())), (before, after)
    code, events, output = _action(box_lab, "backup-check")
    assert code == 0 and "k3s-db: ok" in events[-1]["summary"], output[-2000:]


async def test_b_on_a_backups_row_asks_for_that_repositorys_backup(box_lab: LabState) -> None:
    from textual.widgets import Select

    from console.config import load_config
    from screens.app import Dashboard
    from screens.panels import Panel
    from screens.runner import RunnerScreen
    from tests.test_dashboard import _until

    app = Dashboard(load_config(Path(box_lab.files["console_config"])))
    async with app.run_test(size=(160, 50)) as pilot:
        panel = app.query_one("#panel-backups", Panel)
        await _until(pilot, lambda: panel.table.row_count == 2, 60, "both repositories")
        panel.table.focus()
        for i, key in enumerate(k.value for k in panel.table.rows):
            panel.table.move_cursor(row=i)
            await pilot.press("b")
            await _until(pilot, lambda: isinstance(app.screen, RunnerScreen), 10, "the runner screen")
            want = "db" if key == "k3s-db" else "cluster"
            assert app.screen.query_one("#param-what", Select).value == want, key
            await pilot.press("escape")
            await _until(pilot, lambda: not isinstance(app.screen, RunnerScreen), 10, "back")
