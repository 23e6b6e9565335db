"""`lab up` / `status` / `down` through the real CLI: one lab per directory, nothing left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lab.state import port_open, read_state
from tests.conftest import opsconsole


def _children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid or int(stat[2]) == pid:  # ppid or process group
                out.append(int(entry.name))
    return out


def _processes_mentioning(text: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def test_up_twice_reuses_and_down_leaves_nothing(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    first = opsconsole("lab", "up", "--dir", str(lab_dir), "--fast")
    assert "lab started" in first.stdout
    state = read_state(lab_dir)
    assert state is not None
    listeners = state.listeners()
    assert listeners and all(host.startswith("127.") for host, _ in listeners)
    assert all(port_open(h, p) for h, p in listeners)

    second = opsconsole("lab", "up", "--dir", str(lab_dir), "--fast")
    assert "already running" in second.stdout
    again = read_state(lab_dir)
    assert again is not None and again.pid == state.pid  # the same lab, not a second one

    status = json.loads(opsconsole("lab", "status", "--dir", str(lab_dir), "--json").stdout)
    assert status["running"] is True
    assert status["hetzner_url"] == state.hetzner_url
    assert Path(status["files"]["hcloud_env"]).read_text().count("HCLOUD_") == 2
    assert os.stat(status["files"]["hcloud_env"]).st_mode & 0o077 == 0  # holds a token: owner only
    human = opsconsole("lab", "status", "--dir", str(lab_dir)).stdout
    assert state.hetzner_url in human and "k3s-lb" in human

    runtime = (
        (lab_dir / "pg-runtime").read_text().strip()
        if (lab_dir / "pg-runtime").exists()
        else str(lab_dir / "pg")
    )
    assert _processes_mentioning(runtime)  # the real PostgreSQL servers run …
    down = opsconsole("lab", "down", "--dir", str(lab_dir))
    assert not _processes_mentioning(runtime)  # … and are gone with the lab (they run in their own session)
    assert not Path(runtime).exists() or runtime == str(lab_dir / "pg")
    assert "lab stopped" in down.stdout
    assert not [p for h, p in listeners if port_open(h, p)]
    assert not _children_of(state.pid)
    assert read_state(lab_dir) is None
    stopped = opsconsole("lab", "status", "--dir", str(lab_dir), check=False)
    assert stopped.returncode == 1 and "not running" in stopped.stdout


def test_a_second_daemon_on_the_same_dir_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    lab_dir = tmp_path / "lab"
    opsconsole("lab", "up", "--dir", str(lab_dir), "--fast")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lab.daemon", "--dir", str(lab_dir), "--config", "config.toml", "--fast"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert proc.returncode == 3
        assert "already runs" in proc.stderr
    finally:
        opsconsole("lab", "down", "--dir", str(lab_dir))


def test_empty_scenario_has_no_servers(tmp_path: Path) -> None:
    import urllib.request

    lab_dir = tmp_path / "lab"
    opsconsole("lab", "up", "--dir", str(lab_dir), "--fast", "--scenario", "empty")
    try:
        state = read_state(lab_dir)
        assert state is not None
        req = urllib.request.Request(
            f"{state.hetzner_url}/servers",
            headers={"Authorization": f"Bearer {state.secret('hcloud-token')}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["servers"] == []
    finally:
        opsconsole("lab", "down", "--dir", str(lab_dir))


def test_unknown_scenario_and_broken_config_are_one_sentence(tmp_path: Path) -> None:
    bad = opsconsole("lab", "up", "--dir", str(tmp_path / "x"), "--scenario", "nope", check=False)
    assert bad.returncode == 1 and "unknown scenario" in bad.stderr and "Traceback" not in bad.stderr
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[cluster\nname = 1\n")
    broken = opsconsole("lab", "up", "--dir", str(tmp_path / "y"), "--config", str(cfg), check=False)
    assert broken.returncode == 2 and "broken.toml:1" in broken.stderr and "Traceback" not in broken.stderr
