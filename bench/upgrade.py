"""A K3s upgrade of the seed-sized lab, both routes: the time of each node's steps and the outages the
upgrade's own probes measured.

* ``--route ssh`` to the next patch (v1.34.4+k3s1 → v1.34.5+k3s1): per node drain, install, ready, back;
* ``--route suc`` to the next minor (→ v1.35.2+k3s1): per node cordon-drain-Job until the version changed,
  then Ready and uncordoned;
* for each: the whole command, the longest HTTP (prod) and database-write outages, the HA items restored.

``python -m bench.upgrade [--speed F]`` (a lab of its own; default --fast's 0.2: every lab duration — the
server's 10 s restart, grace periods, rollouts — times F; the figures scale with it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.state import read_state

ROOT = Path(__file__).resolve().parent.parent


def _upgrade(config: str, env: dict[str, str], *args: str) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "opsconsole",
            "--config",
            config,
            "--action",
            "upgrade",
            *args,
            "--yes",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - t0
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    done = next((e for e in events if e.get("kind") == "Finished"), None)
    if proc.returncode != 0 or done is None:
        raise SystemExit(f"upgrade {' '.join(args)} failed ({proc.returncode}): {proc.stdout[-1200:]}")
    return wall, done["report"]


def _until_ready_to_upgrade(config: str, env: dict[str, str], version: str) -> float:
    """Seconds until the upgrade's own preflight passes (a lab at full speed is still settling)."""
    t0 = time.perf_counter()
    argv = [
        sys.executable,
        "-m",
        "opsconsole",
        "--config",
        config,
        "--action",
        "upgrade",
        "--version",
        version,
    ]
    while subprocess.run([*argv, "--dry-run"], cwd=ROOT, capture_output=True, env=env).returncode != 0:
        if time.perf_counter() - t0 > 600:
            raise SystemExit("the lab did not reach steady state in 600 s")
        time.sleep(5)
    return time.perf_counter() - t0


def _print(route: str, wall: float, report: dict[str, Any]) -> None:
    print(
        f"\n--route {route} → {report['target']}: {wall:.1f} s for the whole command, "
        f"verdict {report['verdict']}"
    )
    print(
        f"  {'node':<8} {'role':<6} "
        + " ".join(f"{s:>8}" for s in ("drain", "install", "ready", "back", "total"))
    )
    for n in report["nodes"]:
        t = n["timings"]
        cells = " ".join(
            f"{t[s]:>8.1f}" if s in t else f"{'—':>8}" for s in ("drain", "install", "ready", "back")
        )
        print(f"  {n['node']:<8} {n['role']:<6} {cells} {sum(t.values()):>8.1f}")
    for s in report["slos"]:
        print(f"  {s['slo']}: {s['measured']} s (bound {s['bound']} s) {s['verdict']}")
    print(
        f"  HA lost: {', '.join(h['name'] for h in report['ha_lost']) or 'nothing'}; restored: "
        f"{', '.join(report['ha_restored']) or 'nothing'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speed", type=float, default=None, help="lab speed (default: --fast, 0.2)")
    speed = ap.parse_args().speed
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        lab_dir = tmp / "lab"
        up = [sys.executable, "-m", "opsconsole", "lab", "up", "--dir", str(lab_dir), "--fast"]
        up += ["--speed", str(speed)] if speed else []
        subprocess.run(up, check=True, cwd=ROOT, capture_output=True)
        try:
            state = read_state(lab_dir)
            assert state is not None
            env = {**os.environ, "XDG_STATE_HOME": str(tmp / "state")}
            config = state.files["console_config"]
            settled = _until_ready_to_upgrade(config, env, "v1.34.5+k3s1")
            print(f"lab speed {speed or 0.2}; steady after {settled:.0f} s")
            _print("ssh", *_upgrade(config, env, "--version", "v1.34.5+k3s1"))
            _until_ready_to_upgrade(config, env, "v1.35.2+k3s1")
            _print("suc", *_upgrade(config, env, "--version", "v1.35.2+k3s1", "--route", "suc"))
        finally:
            down = [sys.executable, "-m", "opsconsole", "lab", "down", "--dir", str(lab_dir)]
            subprocess.run(down, cwd=ROOT, capture_output=True)


if __name__ == "__main__":
    main()
