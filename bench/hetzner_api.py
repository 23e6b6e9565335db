"""Lab start-up and Hetzner API twin figures.

* ``lab up`` wall time until every listener answers (the README's first command waits on it);
* latency of ``GET /servers`` and ``GET /load_balancers/{id}`` (what the console's poller asks), p50/p95;
* throughput with 16 concurrent clients;
* the cost of validating one response against the OpenAPI spec (paid by the twin on every answer).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from lab.hetzner.schema import load_validator
from lab.state import read_state

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "opsconsole", *args], check=True, cwd=ROOT, capture_output=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        starts = []
        for i in range(3):
            lab_dir = Path(tmp) / f"lab{i}"
            t0 = time.perf_counter()
            _cli("lab", "up", "--dir", str(lab_dir), "--fast")
            starts.append(time.perf_counter() - t0)
            if i < 2:
                _cli("lab", "down", "--dir", str(lab_dir))
        print(
            f"lab up (until every listener answers): median {statistics.median(starts) * 1000:.0f} ms "
            f"over {len(starts)} runs"
        )
        state = read_state(Path(tmp) / "lab2")
        assert state is not None
        headers = {"Authorization": f"Bearer {state.secret('hcloud-token')}"}
        try:
            async with aiohttp.ClientSession(headers=headers) as http:
                for path in ("/servers", "/load_balancers/5834131"):
                    lat = []
                    for _ in range(300):
                        t0 = time.perf_counter()
                        async with http.get(state.hetzner_url + path) as resp:
                            await resp.read()
                        lat.append((time.perf_counter() - t0) * 1000)
                    print(f"GET {path}: p50 {pct(lat, 0.5):.2f} ms, p95 {pct(lat, 0.95):.2f} ms (n=300)")
                n = 1000
                sem = asyncio.Semaphore(16)

                async def one() -> None:
                    async with sem, http.get(state.hetzner_url + "/servers") as resp:
                        await resp.read()

                t0 = time.perf_counter()
                await asyncio.gather(*(one() for _ in range(n)))
                print(f"GET /servers throughput, 16 concurrent: {n / (time.perf_counter() - t0):.0f} req/s")
                async with http.get(state.hetzner_url + "/servers") as resp:
                    body = await resp.json()
            validator = load_validator()
            t0 = time.perf_counter()
            for _ in range(200):
                assert not validator.errors("GET", "/servers", 200, body)
            print(f"schema validation of a 3-server list: {(time.perf_counter() - t0) / 200 * 1000:.2f} ms")
        finally:
            _cli("lab", "down", "--dir", str(Path(tmp) / "lab2"))
