"""``opsconsole watch`` in a steady lab: its resident memory and CPU over a window, and its Hetzner API
requests per hour (the dashboard's budget: ≤ 360), measured from the lab's own request count.

The lab runs at --fast's speed (its controllers' clocks accelerated); the watcher runs in real time, so the
requests per hour are its own real rate, measured over the window and scaled to an hour.

``python -m bench.watch [--minutes N]`` (default 10; a lab of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from lab.cli import control
from lab.state import LabState, read_state

ROOT = Path(__file__).resolve().parent.parent


def _proc_stats(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds: user + system) of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    rss_pages = int(fields[21])
    return rss_pages * os.sysconf("SC_PAGE_SIZE") / 1e6, (int(fields[11]) + int(fields[12])) / ticks


def _requests(lab: LabState) -> int:
    return int(control(lab, "GET", "/status")["hetzner"]["requests"])


def _metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", resp.read().decode(), re.M)
    return float(m.group(1)) if m else None


def run(minutes: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    lab_dir = work / "lab"
    env = {**os.environ, "XDG_STATE_HOME": str(work / "state")}
    subprocess.run(
        [sys.executable, "-m", "opsconsole", "lab", "up", "--dir", str(lab_dir), "--fast"],
        cwd=ROOT,
        check=True,
        env=env,
        capture_output=True,
    )
    lab = read_state(lab_dir)
    assert lab is not None
    log = (work / "watch.log").open("w")
    command = ["watch", "--config", lab.files["console_config"], "--listen", "127.0.0.1:0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "opsconsole", *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        port = None
        while port is None and time.monotonic() < deadline:
            m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", (work / "watch.log").read_text())
            port = int(m.group(1)) if m else None
            time.sleep(0.2)
        assert port is not None, (work / "watch.log").read_text()
        while _metric(port, "opsconsole_watch_last_evaluation_age_seconds") is None:
            time.sleep(0.5)
        time.sleep(30)  # past start-up: the sources' first answers, the imports of the first notification
        rss0, cpu0 = _proc_stats(proc.pid)
        req0, t0 = _requests(lab), time.monotonic()
        peak = rss0
        while time.monotonic() - t0 < minutes * 60:
            time.sleep(5)
            peak = max(peak, _proc_stats(proc.pid)[0])
        rss1, cpu1 = _proc_stats(proc.pid)
        req1, t1 = _requests(lab), time.monotonic()
        window = t1 - t0
        return {
            "window_s": round(window, 1),
            "rss_start_mb": round(rss0, 1),
            "rss_end_mb": round(rss1, 1),
            "rss_peak_mb": round(peak, 1),
            "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 1),
            "cpu_s": round(cpu1 - cpu0, 2),
            "cpu_pct": round(100 * (cpu1 - cpu0) / window, 2),
            "hetzner_requests_per_hour": round((req1 - req0) * 3600 / window),
            "alive": proc.poll() is None,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        subprocess.run(
            [sys.executable, "-m", "opsconsole", "lab", "down", "--dir", str(lab_dir)],
            cwd=ROOT,
            env=env,
            capture_output=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.watch")
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    figures = run(args.minutes)
    for key, value in figures.items():
        print(f"{key:<28} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
