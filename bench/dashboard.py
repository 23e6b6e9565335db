"""The dashboard's speed against the lab (figures, not pass/fail; goals from issue #5).

* first paint — process start to banner + panel frames mounted and keys answered (goal: median ≤ 0.8 s);
* every panel populated — process start to every panel holding rows from its source (median ≤ 2.5 s);
* pod change -> cell — a pod's Ready condition patched through the API to the changed cell in the
  Database panel (p95 ≤ 250 ms);
* at scale (``--scale 500,10000,200``, 60 s of 200 pod updates/s) — key presses answered (p95 ≤ 100 ms),
  resident memory (≤ 300 MB);
* Hetzner requests in a steady-state hour (≤ 360), from the poller's own count over a measured window.

Run: ``python -m bench.dashboard [--scale]`` (the scale run takes ~3 minutes).
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUNS = 11  # start-up figures vary ±0.3 s run to run on this 2-core machine: medians of eleven

FIRST_PAINT = r"""
import time, sys, json, asyncio
t0 = time.perf_counter()
from pathlib import Path
from console.config_file import read_head
from screens.app import Dashboard
from screens.panels import Panel
marks = {}
class Timed(Dashboard):
    def on_mount(self):
        # Registered before the app's own after-refresh work (it starts the config's validation in a
        # thread), so the mark is the first frame itself, not the first frame plus a thread's start.
        self.call_after_refresh(lambda: marks.setdefault("first_paint", time.perf_counter() - t0))
        super().on_mount()
    def action_focus_next(self):
        # The key's own handler ran: what the operator sees react (focus moves).  Pilot's press() returns
        # only once the whole screen is idle, which at start-up is "every panel loaded".
        marks.setdefault("first_key_handled", time.perf_counter() - t0)
        super().action_focus_next()
    def _show(self, keys):
        # Every panel holding rows from a live source, checked where panels change (no polling loop
        # competing with the app for the interpreter).
        super()._show(keys)
        panels = self.query(Panel)
        if "all_panels" not in marks and all(p.table.row_count and p.state.value == "ok" for p in panels):
            marks["all_panels"] = time.perf_counter() - t0
            loaded.set()
loaded = asyncio.Event()
async def main():
    # As `opsconsole` opens it (console/cli.py _dashboard): painted from the config's head, validated after.
    app = Timed(None, head=read_head(Path(sys.argv[1])))
    async with app.run_test(size=(160, 90)) as pilot:
        pressed = time.perf_counter() - t0
        await pilot.press("tab")
        marks["first_key"] = time.perf_counter() - t0
        marks["key_sent"] = pressed
        while "all_panels" not in marks and time.perf_counter() - t0 < 30:
            try:  # event-driven from _show; a slow look as a backstop for a state set elsewhere
                await asyncio.wait_for(loaded.wait(), 0.2)
            except TimeoutError:
                if all(p.table.row_count and p.state.value == "ok" for p in app.query(Panel)):
                    marks.setdefault("all_panels", time.perf_counter() - t0)
        await pilot.press("q")
asyncio.run(main())
print(json.dumps(marks))
"""


def _lab(tmp: str, *extra: str) -> Any:
    from lab.state import read_state

    lab_dir = Path(tmp) / "lab"
    subprocess.run(
        [sys.executable, "-m", "console", "lab", "up", "--dir", str(lab_dir), "--fast", *extra],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    return lab_dir, read_state(lab_dir)


def _down(lab_dir: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "console", "lab", "down", "--dir", str(lab_dir)], cwd=ROOT, check=False
    )


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def _pod_to_cell(config_path: Path, runs: int = 40) -> list[float]:
    """Patch a pooler pod's Ready condition (as its kubelet would) and time the Database cell's change."""
    from console.config import load_config
    from console.sources.kube import api_client
    from screens.app import Dashboard
    from screens.panels import Panel

    config = load_config(config_path)
    app = Dashboard(config)
    api = await api_client(config.kubernetes.kubeconfig, config.kubernetes.context)
    out = []
    async with app.run_test(size=(160, 90)) as pilot:
        panel = app.query_one("#panel-database", Panel)
        while not any(k.value.startswith("main-db-pooler") for k in panel.table.rows):
            await pilot.pause(0.05)
        key = next(k for k in panel.table.rows if k.value.startswith("main-db-pooler"))
        name = key.value
        for i in range(runs):
            want = "NOT READY" if i % 2 == 0 else "ready"
            status = "False" if want == "NOT READY" else "True"
            body = {"status": {"conditions": [{"type": "Ready", "status": status}]}}
            path = f"/api/v1/namespaces/{config.database.namespace}/pods/{name}/status"
            method, url, headers, data, post = await api.param_serialize(
                "PATCH",
                path,
                body=body,
                header_params={
                    "Content-Type": "application/strategic-merge-patch+json",
                    "Accept": "application/json",
                },
                auth_settings=["BearerToken"],
            )
            t0 = time.perf_counter()
            resp = await api.call_api(method, url, headers, data, post, _preload_content=False)
            await resp.read()
            while str(panel.table.get_cell(key, "3")) != want:
                await asyncio.sleep(0.002)
                if time.perf_counter() - t0 > 5:
                    break
            out.append((time.perf_counter() - t0) * 1000)
            await pilot.pause(0.1)
        await pilot.press("q")
    await api.close()
    return out


async def _hetzner_rate(config_path: Path, speedup: float = 60.0, hours: float = 1.0) -> float:
    """Requests per hour on an accelerated clock: the poller's budget arithmetic scaled by ``speedup``
    (a project of 60 × 3600 requests/hour polls 60 × as often), counted over ``hours`` simulated hours,
    after the start-up poll."""
    from console.config import load_config
    from console.sources.hetzner import HetznerSource
    from console.store import ClusterStore

    config = load_config(config_path)
    hz = config.hetzner.model_copy(
        update={"requests_per_hour": int(config.hetzner.requests_per_hour * speedup)}
    )
    source = HetznerSource(ClusterStore(), config.model_copy(update={"hetzner": hz}))
    source.rate = {}
    source.start()
    await source.synced.wait()
    first = source.requests
    await asyncio.sleep(hours * 3600 / speedup)
    await source.stop()
    return (source.requests - first) / hours


async def _scale(config_path: Path, seconds: float = 60.0) -> dict[str, float]:
    from console.config import load_config
    from screens.app import Dashboard
    from screens.panels import Panel

    app = Dashboard(load_config(config_path))
    latencies = []
    async with app.run_test(size=(160, 90)) as pilot:
        t0 = time.perf_counter()
        while not app.query_one("#panel-nodes", Panel).table.row_count >= 500:
            await pilot.pause(0.1)
            if time.perf_counter() - t0 > 120:
                break
        loaded = time.perf_counter() - t0
        end = time.perf_counter() + seconds
        keys = ["tab", "down", "down", "shift+tab", "up"]
        i = 0
        while time.perf_counter() < end:
            k0 = time.perf_counter()
            await pilot.press(keys[i % len(keys)])  # returns once the key has been processed
            latencies.append((time.perf_counter() - k0) * 1000)
            i += 1
            await asyncio.sleep(0.2)
        await pilot.press("q")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "loaded_s": loaded,
        "keys": len(latencies),
        "key_p50_ms": statistics.median(latencies),
        "key_p95_ms": _pct(latencies, 0.95),
        "max_rss_mb": rss,
    }


def main(scale: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lab_dir, state = _lab(tmp)
        try:
            from lab.cli import control

            t0 = time.monotonic()  # the Storage Box seeds its history in the background: wait for it
            while not control(state, "GET", "/storagebox")["ready"] and time.monotonic() - t0 < 120:
                time.sleep(0.5)
            config = Path(state.files["console_config"])
            marks = []
            for _ in range(RUNS):
                proc = subprocess.run(
                    [sys.executable, "-c", FIRST_PAINT, str(config)],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                marks.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            fp = [m["first_paint"] for m in marks]
            fk = [m["first_key"] for m in marks]
            fh = [m.get("first_key_handled", m["first_key"]) for m in marks]
            lag = [m.get("first_key_handled", m["first_key"]) - m["key_sent"] for m in marks]
            ap = [m["all_panels"] for m in marks]
            for label, xs, goal in (
                ("first paint", fp, 0.8),
                ("first key (Pilot idle) ", fk, 0.8),
                ("first key (handled)    ", fh, 0.8),
                ("key sent -> handled    ", lag, 0.1),
                ("all panels ", ap, 2.5),
            ):
                print(
                    f"dashboard {label}: median {statistics.median(xs):.2f} s "
                    f"(min {min(xs):.2f}, max {max(xs):.2f}; goal ≤ {goal})"
                )
            cell = asyncio.run(_pod_to_cell(config))
            print(
                f"pod change -> cell:    p50 {statistics.median(cell):.0f} ms, "
                f"p95 {_pct(cell, 0.95):.0f} ms, "
                f"max {max(cell):.0f} ms over {len(cell)} changes (goal p95 ≤ 250)"
            )
            rate = asyncio.run(_hetzner_rate(config))
            print(f"hetzner requests/hour: {rate:.0f} in steady state (goal ≤ 360)")
        finally:
            _down(lab_dir)
    if scale:
        with tempfile.TemporaryDirectory() as tmp:
            lab_dir, state = _lab(tmp, "--scale", "500,10000,200")
            try:
                r = asyncio.run(_scale(Path(state.files["console_config"])))
                print(
                    f"scale 500 nodes/10k pods/200 upd/s: loaded in {r['loaded_s']:.1f} s, {r['keys']} keys "
                    f"p50 {r['key_p50_ms']:.0f} ms p95 {r['key_p95_ms']:.0f} ms (goal ≤ 100), "
                    f"max RSS {r['max_rss_mb']:.0f} MB (goal ≤ 300)"
                )
            finally:
                _down(lab_dir)


if __name__ == "__main__":
    main(scale="--scale" in sys.argv)
