"""The cockpit's speed against the lab at seed size (figures, not pass/fail; goals from issue #20).

* Enter → details painted — Enter on a Nodes or Pods row to the first frame showing the object's
  describe (its read from the API included): goal p95 ≤ 150 ms;
* followed log line → on screen — a request served by a staging DocFast pod (its access-log line) to the
  frame showing that line in the log screen: goal p95 ≤ 100 ms;
* a log at 1,000 lines/s — the lab's pod writes numbered lines for 20 s while the log screen follows and
  keys are pressed: lines behind at the end (goal: none beyond a flush), key → frame p95 (≤ 100 ms).

Run: ``python -m bench.cockpit`` (about a minute).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench.dashboard import _down, _lab, _on_frames, _pct


async def _until(predicate: Any, timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True


async def _next_frame(app: Any, shown: Any, timeout: float = 5.0) -> float:
    """The end of the first frame rendered once ``shown()`` holds."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    listeners = _on_frames(app)

    def frame() -> None:
        if not done.done() and shown():
            done.set_result(time.perf_counter())

    listeners.append(frame)
    try:
        return await asyncio.wait_for(done, timeout)
    finally:
        listeners.remove(frame)


async def _enter_to_details(app: Any, pilot: Any, panel_id: str, runs: int) -> list[float]:
    from textual import events

    from screens.detail import DetailScreen
    from screens.panels import Panel

    panel = app.query_one(f"#panel-{panel_id}", Panel)
    out = []
    for i in range(runs):
        panel.table.focus()
        panel.table.move_cursor(row=i % max(1, panel.table.row_count))
        await pilot.pause(0.05)
        event = events.Key("enter", None)
        event.set_sender(app)
        t0 = time.perf_counter()
        app._driver.send_message(event)

        def shown() -> bool:
            s = app.screen
            return isinstance(s, DetailScreen) and s.description is not None

        painted = await _next_frame(app, shown)
        out.append((painted - t0) * 1000)
        await pilot.press("escape")
        await _until(lambda: not isinstance(app.screen, DetailScreen), 5)
    return out


def _get(url: str, host: str) -> None:
    req = urllib.request.Request(url, headers={"Host": host})
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()


async def _log_latency(app: Any, pilot: Any, state: Any, pod: str, runs: int) -> list[float]:
    from screens.logs import LogScreen

    logs = app.screen
    assert isinstance(logs, LogScreen)
    await _until(lambda: logs.state == "following", 10)
    out = []
    for _ in range(runs):
        mark = uuid.uuid4().hex
        t0 = time.perf_counter()
        await asyncio.to_thread(
            _get, f"http://{state.load_balancer['address']}/version?m={mark}", "staging.docfast.dev"
        )

        def shown(mark: str = mark) -> bool:
            return any(mark in ln for ln in list(logs.lines)[-50:]) and not logs.pending

        painted = await _next_frame(app, shown)
        out.append((painted - t0) * 1000)
        await asyncio.sleep(0.1)
    return out


async def _flood(app: Any, state: Any, pod: str, seconds: float) -> dict[str, Any]:
    """1,000 lines/s for ``seconds`` while keys scroll the log; how far the screen is behind at the end."""
    from textual import events

    from lab.cli import control
    from screens.logs import LogScreen

    logs = app.screen
    assert isinstance(logs, LogScreen)
    body = {"rate": 1000, "seconds": seconds}
    total = control(state, "POST", f"/pods/docfast-staging/{pod}/log-flood", body)["lines"]
    flood = asyncio.ensure_future(asyncio.sleep(seconds))
    keys: list[float] = []
    i = 0
    while not flood.done():
        key = ("up", "down")[i % 2]
        view = logs.view
        before = view.scroll_y
        event = events.Key(key, None)
        event.set_sender(app)
        t0 = time.perf_counter()
        app._driver.send_message(event)
        try:
            painted = await _next_frame(app, lambda: view.scroll_y != before, 2.0)  # noqa: B023
            keys.append((painted - t0) * 1000)
        except TimeoutError:
            pass  # at the end (or top) of the log a key does not scroll: not a sample
        i += 1
        await asyncio.sleep(0.1)
    await flood
    written = int(total)

    def last_seen() -> int:
        for line in reversed(logs.lines):
            if line.startswith("flood line "):
                return int(line.split()[2])
        return -1

    t_end = time.perf_counter()
    caught_up = await _until(lambda: last_seen() == written - 1 and not logs.pending, 10)
    return {
        "written": written,
        "keys": keys,
        "catch_up_ms": (time.perf_counter() - t_end) * 1000,
        "caught_up": caught_up,
    }


async def _run(config_path: Path, state: Any) -> dict[str, Any]:
    from console.config import load_config
    from screens.app import Dashboard
    from screens.logs import LogScreen
    from screens.panels import Panel

    app = Dashboard(load_config(config_path))
    async with app.run_test(size=(160, 50)) as pilot:
        pods = app.query_one("#panel-pods", Panel)
        await _until(
            lambda: pods.table.row_count > 10 and app.query_one("#panel-nodes", Panel).table.row_count == 3,
            60,
        )
        await pilot.pause(1.0)
        details = await _enter_to_details(app, pilot, "nodes", 15) + await _enter_to_details(
            app, pilot, "pods", 15
        )
        pod = next(p.name for p in app.snapshot.pods if p.namespace == "docfast-staging")
        app.push_screen(LogScreen(app.live.kube_api, "docfast-staging", pod))
        await pilot.pause(0.5)
        lines = await _log_latency(app, pilot, state, pod, 30)
        flood = await _flood(app, state, pod, 20.0)
        await pilot.press("escape")
    return {"details": details, "lines": lines, "flood": flood}


def _figures(label: str, xs: list[float], goal: str) -> str:
    if not xs:
        return f"{label}: no samples"
    p50, p95 = statistics.median(xs), _pct(xs, 0.95)
    return (
        f"{label}: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(xs):.0f} ms ({len(xs)} samples; goal {goal})"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lab_dir, state = _lab(tmp)
        try:
            r = asyncio.run(_run(Path(state.files["console_config"]), state))
        finally:
            _down(lab_dir)
    print(_figures("Enter -> details painted ", r["details"], "p95 ≤ 150 ms"))
    print(_figures("log line -> on screen    ", r["lines"], "p95 ≤ 100 ms"))
    f = r["flood"]
    after = f"{f['catch_up_ms']:.0f} ms" if f["caught_up"] else "NOT within 10 s"
    print(f"log at 1,000 lines/s for 20 s: {f['written']} lines; the last on screen {after} after the flood")
    print(_figures("  key -> frame while flooding", f["keys"], "p95 ≤ 100 ms"))


if __name__ == "__main__":
    main()
