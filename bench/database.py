"""The database's tools where the server runs, against the seed-sized lab.

* ``db`` backup, ``dump_via = "exec"`` (pg_dump in the replica's pod, its stdout over the exec WebSocket
  into borg) against ``"local"`` (this machine's pg_dump through the SSH tunnel into a FIFO): the dump +
  upload steps' time from the action's own events, and the whole command.  Goal: exec within 20 % of local.
* A switchover through the real PgBouncer, with the pooler paused (PgBouncer's PAUSE) and without: the
  writes that failed and the longest write outage the action's own probe measured.

``python -m bench.database`` (a lab of its own, fast mode).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from lab.state import LabState, read_state

ROOT = Path(__file__).resolve().parent.parent
RUNS = 5


def _opsconsole(*args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "opsconsole", *args], cwd=ROOT, capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(f"opsconsole {' '.join(args)} failed ({proc.returncode}): {proc.stdout[-800:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _config(state: LabState, tmp: Path, dump_via: str) -> str:
    raw = tomllib.loads(Path(state.files["console_config"]).read_text())
    raw["database"]["dump_via"] = dump_via
    path = tmp / f"{dump_via}.toml"
    path.write_text(tomli_w.dumps(raw))
    return str(path)


def _backup(config: str) -> tuple[float, float]:
    """(dump + upload seconds from the events, whole command seconds)."""
    t0 = time.perf_counter()
    events = _opsconsole("--config", config, "--action", "backup", "--what", "db", "--yes", "--json")
    wall = time.perf_counter() - t0
    start = next(e["at"] for e in events if e["kind"] == "StepStarted" and e["step"] == "dump")
    end = next(e["at"] for e in events if e["kind"] == "StepFinished" and e["step"] == "upload")
    return end - start, wall


def dumps(state: LabState, tmp: Path) -> None:
    configs = {via: _config(state, tmp, via) for via in ("exec", "local")}
    figures: dict[str, list[tuple[float, float]]] = {"exec": [], "local": []}
    _backup(configs["exec"])  # warm: the borg cache and the tunnel's first connection
    for _ in range(RUNS):
        for via, config in configs.items():  # interleaved, so drift hits both alike
            figures[via].append(_backup(config))
    med = {via: statistics.median(s for s, _ in runs) for via, runs in figures.items()}
    for via, runs in figures.items():
        wall = statistics.median(w for _, w in runs)
        print(
            f"backup --what db, dump_via={via:<5}: dump+upload median {med[via]:.2f} s, command {wall:.2f} s"
        )
    print(f"exec / local: {med['exec'] / med['local']:.2f} (goal ≤ 1.20), n={RUNS} each")


def switchovers(state: LabState, tmp: Path) -> None:
    """Switchovers back and forth, paused and not in turn, the write probe every 0.1 s (denser than the
    drills' default, so a short window is seen)."""
    raw = tomllib.loads(Path(state.files["console_config"]).read_text())
    raw["drill"]["probe_interval_s"] = 0.1
    config = tmp / "switchover.toml"
    config.write_text(tomli_w.dumps(raw))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp / "state")}
    totals = {"paused": [0, 0, 0.0], "no-pause": [0, 0, 0.0]}
    for _ in range(RUNS):
        for mode in ("paused", "no-pause"):
            extra = ["--no-pause"] if mode == "no-pause" else []
            args = ["--config", str(config), "--action", "switchover", "--yes", "--json", *extra]
            r = _opsconsole(*args, env=env)[-1]["report"]
            t = totals[mode]
            t[0], t[1], t[2] = t[0] + r["failed"], t[1] + r["writes"], max(t[2], r["longest_failure_s"])
    for mode, (failed, writes, longest) in totals.items():
        print(
            f"switchover ({mode:<8}) x{RUNS}: {failed} of {writes} writes failed, "
            f"longest failure {longest:.2f} s"
        )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        lab_dir = tmp / "lab"
        up = [sys.executable, "-m", "opsconsole", "lab", "up", "--dir", str(lab_dir), "--fast"]
        subprocess.run(up, check=True, cwd=ROOT, capture_output=True)
        try:
            state = read_state(lab_dir)
            assert state is not None
            dumps(state, tmp)
            switchovers(state, tmp)
        finally:
            down = [sys.executable, "-m", "opsconsole", "lab", "down", "--dir", str(lab_dir)]
            subprocess.run(down, cwd=ROOT, capture_output=True)


if __name__ == "__main__":
    main()
