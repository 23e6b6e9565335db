"""Errors exactly as documented, and the 3600-per-hour budget with its RateLimit-* headers."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from lab.cli import control
from lab.hetzner.schema import load_validator
from lab.state import LabState


def _auth(lab: LabState, token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or lab.secret('hcloud-token')}"}


async def test_bad_token_gets_401_with_the_documented_body(lab: LabState) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{lab.hetzner_url}/servers", headers=_auth(lab, "0" * 64)) as resp:
            assert resp.status == 401
            body = await resp.json()
        async with http.get(f"{lab.hetzner_url}/servers") as resp:
            assert resp.status == 401
    assert body["error"]["code"] == "unauthorized"
    assert body["error"]["message"]
    assert load_validator().errors("GET", "/servers", 401, body) == []


async def test_readonly_token_may_read_but_not_write(lab: LabState) -> None:
    ro = _auth(lab, lab.secret("hcloud-token-readonly"))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{lab.hetzner_url}/servers/121365840", headers=ro) as resp:
            assert resp.status == 200
        async with http.post(f"{lab.hetzner_url}/servers/121365840/actions/poweroff", headers=ro) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"]["code"] == "token_readonly"
        async with http.get(f"{lab.hetzner_url}/servers/121365840", headers=ro) as resp:
            assert (await resp.json())["server"]["status"] == "running"


async def test_not_found_json_error_and_locked(lab: LabState) -> None:
    async with aiohttp.ClientSession(headers=_auth(lab)) as http:
        async with http.get(f"{lab.hetzner_url}/servers/4242") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "not_found"
        async with http.post(f"{lab.hetzner_url}/ssh_keys", data=b"{not json") as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == "json_error"
        async with http.post(f"{lab.hetzner_url}/ssh_keys", json={"name": "x"}) as resp:
            assert resp.status == 400
            body = await resp.json()
            assert body["error"]["code"] == "invalid_input"
            assert body["error"]["details"]["fields"][0]["name"]
        # A second action while the first still runs: the server is locked (423).
        async with http.post(f"{lab.hetzner_url}/servers/121365837/actions/reboot") as resp:
            assert resp.status == 201
        async with http.post(f"{lab.hetzner_url}/servers/121365837/actions/reset") as resp:
            assert resp.status == 423
            assert (await resp.json())["error"]["code"] == "locked"


async def test_the_3601st_request_in_an_hour_gets_429(lab: LabState) -> None:
    # Freeze the budget's clock so the one-per-second refill cannot race the test, and start full.
    control(lab, "POST", "/budget", {"freeze": True, "remaining": 3600})
    try:
        seen: list[int] = []
        resets: set[int] = set()
        sem = asyncio.Semaphore(32)
        async with aiohttp.ClientSession(headers=_auth(lab)) as http:

            async def one() -> None:
                async with sem, http.get(f"{lab.hetzner_url}/locations/2") as resp:
                    assert resp.status == 200
                    assert resp.headers["RateLimit-Limit"] == "3600"
                    seen.append(int(resp.headers["RateLimit-Remaining"]))
                    resets.add(int(resp.headers["RateLimit-Reset"]))

            await asyncio.gather(*(one() for _ in range(3600)))
            assert sorted(seen) == list(range(3600))  # every request counted down by exactly one
            async with http.get(f"{lab.hetzner_url}/locations/2") as resp:
                assert resp.status == 429
                body = await resp.json()
                assert body["error"]["code"] == "rate_limit_exceeded"
                assert resp.headers["RateLimit-Remaining"] == "0"
                reset = int(resp.headers["RateLimit-Reset"])
            # Empty budget: full again 3600 s from now (one request per second refills).
            assert abs(reset - (time.time() + 3600)) <= 5
            assert max(resets) <= reset
            control(lab, "POST", "/budget", {"advance_s": 3})
            async with http.get(f"{lab.hetzner_url}/locations/2") as resp:
                assert resp.status == 200
                assert resp.headers["RateLimit-Remaining"] == "2"
                # 3 s later and one request spent: 3598 missing, full again at (t0 + 3) + 3598.
                assert int(resp.headers["RateLimit-Reset"]) == reset + 1
    finally:
        control(lab, "POST", "/budget", {"freeze": False, "remaining": 3600})


async def test_injected_faults_500_and_429(lab: LabState) -> None:
    async with aiohttp.ClientSession(headers=_auth(lab)) as http:
        control(lab, "POST", "/fault/hetzner", {"errors_s": 30})
        async with http.get(f"{lab.hetzner_url}/servers") as resp:
            assert resp.status == 500
        control(lab, "POST", "/fault/hetzner", {"clear": True, "throttle_s": 30})
        async with http.get(f"{lab.hetzner_url}/servers") as resp:
            assert resp.status == 429
        control(lab, "POST", "/fault/hetzner", {"clear": True})
        async with http.get(f"{lab.hetzner_url}/servers") as resp:
            assert resp.status == 200


def test_every_response_so_far_validated(lab: LabState) -> None:
    stats = control(lab, "GET", "/status")["hetzner"]
    assert stats["validated"] > 0
    assert stats["violations"] == 0
