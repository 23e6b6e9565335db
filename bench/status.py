"""``opsconsole --action status --json`` wall time against the seed-sized lab (goal: median ≤ 2.0 s).

Whole-process time, as a script or cron job sees it: interpreter start, imports, kubeconfig, first list
of every watched kind, one Hetzner poll, two HTTP probes, the findings, the JSON.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.state import read_state

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lab_dir = Path(tmp) / "lab"
        subprocess.run(
            [sys.executable, "-m", "opsconsole", "lab", "up", "--dir", str(lab_dir), "--fast"],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
        try:
            state = read_state(lab_dir)
            assert state is not None
            from lab.cli import control

            t0 = time.monotonic()  # the Storage Box seeds its history in the background: measure after it
            while not control(state, "GET", "/storagebox")["ready"] and time.monotonic() - t0 < 120:
                time.sleep(0.5)
            runs = []
            for _ in range(7):
                t0 = time.perf_counter()
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "opsconsole",
                        "--config",
                        state.files["console_config"],
                        "--action",
                        "status",
                        "--json",
                    ],
                    cwd=ROOT,
                    capture_output=True,
                )
                runs.append(time.perf_counter() - t0)
                if proc.returncode not in (0, 1) or not proc.stdout.startswith(b"{"):  # 1: a critical finding
                    raise SystemExit(f"status failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", "import opsconsole.cli, actions.status"], cwd=ROOT, check=True
            )
            floor = time.perf_counter() - t0
            print(
                f"--action status --json: median {statistics.median(runs):.2f} s, min {min(runs):.2f} s, "
                f"max {max(runs):.2f} s (n=7); interpreter + imports alone {floor:.2f} s"
            )
        finally:
            subprocess.run(
                [sys.executable, "-m", "opsconsole", "lab", "down", "--dir", str(lab_dir)],
                cwd=ROOT,
                capture_output=True,
            )


if __name__ == "__main__":
    main()
