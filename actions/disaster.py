"""Disaster recovery (``--action recover`` when the cluster itself is gone): the seed's procedure, timed.

The seed: "provision 3 fresh CAX11 nodes, install K3s, restore the etcd snapshot or re-apply manifests,
restore the database from pg_dump, update DNS; estimated 15–30 minutes".  Here, each step is the console's
own action, run in order with its own journal entry and events:

1. **provision** — the Hetzner resources and K3s (``actions/provision.py``); the fresh cluster's kubeconfig
   (saved by the provision) is what every later step talks to;
2. **restore-cluster** — the etcd snapshot from the latest ``k3s-cluster`` archive, by K3s's
   ``--cluster-reset`` procedure (``actions/restore.py``): namespaces, workloads, the CNPG ``Cluster`` and
   ``Pooler``, secrets and certificates come back as they were at the backup;
3. **database** — once CNPG reports the cluster healthy again (its operator bootstraps empty instances),
   each database is restored from the latest ``k3s-db`` archive (``--i-mean-production`` is implied: the
   databases are empty, there is nothing else to lose; a safety archive is still taken);
4. **verify** — DocFast answers its health URL through the new load balancer, and each database holds
   the rows the restore reported;
5. **report** — per-step timings, the total against the seed's 15–30 minutes, and the new load balancer's
   IPv4 for the DNS records (the console does not change DNS: the seed's zone is managed elsewhere).

It runs only when the control-plane server is missing from the Hetzner project (a cluster that still has
its server is not a disaster: ``replace-node``, ``restore-cluster`` or ``restore`` fit better) and only with
``--yes``.  Known gap on a real project: restoring an etcd snapshot onto a *new* K3s server needs the old
cluster's server token (K3s encrypts its bootstrap data with it) — keep that token with the Borg passphrase.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import aiohttp

from actions.provision import fresh_config, run_provision
from actions.restore import run_restore_cluster, run_restore_db
from console.clients.hetzner import client
from console.clients.kube import KubeError, request
from console.config import Config
from console.events import Event, Finished, Log, StepFinished, StepStarted
from console.sources.http import probe

EXIT_FAILED, EXIT_REFUSED = 1, 3
SEED_ESTIMATE_MIN = (15, 30)


def is_disaster(config: Config) -> bool:
    """The control-plane node's server is missing from the project (blocking: run in a thread)."""
    server = next(n for n in config.nodes if n.role == "server")
    return client(config).servers.get_by_name(server.name) is None


async def _cnpg_healthy(config: Config, timeout: float) -> str | None:
    """None once the CNPG cluster says healthy with every instance ready *and* its primary takes a
    connection and is not in recovery — a status restored from etcd is the backup's, not today's."""
    from console.clients.pgtools import Primary
    from console.sources.kube import api_client

    db = config.database
    api: Any = await api_client(config.kubernetes.kubeconfig or None, config.kubernetes.context)
    primary = Primary(config, api)
    phase = "not seen"

    async def writable() -> bool:
        try:
            rows = await primary.sql("postgres", "SELECT pg_is_in_recovery()")
        except Exception as exc:  # not up yet: a refused tunnel, connection or a restarting server
            nonlocal phase
            phase = f"primary not answering ({type(exc).__name__})"
            return False
        return bool(rows) and rows[0][0] is False

    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                cl = await request(
                    api, "GET", f"/apis/postgresql.cnpg.io/v1/namespaces/{db.namespace}/clusters/{db.cluster}"
                )
                st = cl.get("status") or {}
                phase = str(st.get("phase", "no status"))
                ready = int(st.get("readyInstances", 0)) == int(st.get("instances", -1))
                if "healthy" in phase.lower() and ready and await writable():
                    return None
            except KubeError as exc:
                phase = exc.message
            await asyncio.sleep(1.0)
    finally:
        await primary.close()
        await api.close()
    return phase


async def _serving(config: Config, timeout: float) -> str | None:
    """None once production's health URL answers 2xx through the load balancer."""
    h = config.health
    deadline = time.monotonic() + timeout
    last = "no answer"
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            p = await probe(session, "prod", h.prod_url, h.resolve)
            if p.ok:
                return None
            last = p.error or f"HTTP {p.status}"
            await asyncio.sleep(1.0)
    return last


def _lb_ipv4(config: Config) -> str:
    lb: Any = client(config).load_balancers.get_by_name(config.hetzner.load_balancer.name)
    return str(lb.public_net.ipv4.ip) if lb is not None else "?"


def plan_lines(config: Config) -> list[str]:
    return [
        "provision: Hetzner resources and K3s (see `--action provision --plan`)",
        "restore-cluster: etcd snapshot from the latest k3s-cluster archive",
        f"restore: {', '.join(config.database.databases)} from the latest k3s-db archive (once CNPG is up)",
        "verify: production's health URL through the new load balancer; row counts",
        "report: the new load balancer's IPv4 for DNS",
    ]


async def preview(config: Config, emit: Callable[[Event], None]) -> int:
    """What the TUI shows before the typed confirmation."""
    for line in plan_lines(config):
        emit(Log("plan", line))
    emit(Finished("PLAN", 0, "the cluster's server is gone from the project; these steps rebuild it"))
    return 0


async def run_disaster_recovery(config: Config, emit: Callable[[Event], None], yes: bool) -> int:
    plan = plan_lines(config)
    for line in plan:
        emit(Log("plan", line))
    if not yes:
        emit(
            Finished(
                "REFUSED",
                2,
                "the cluster's server is gone: add --yes to run the recovery above",
                {"plan": plan},
            )
        )
        return 2
    timings: dict[str, float] = {}
    started = time.monotonic()
    results: dict[str, Any] = {}

    current = [""]

    def sub(e: Event) -> None:
        """A step's own verdict is one line of this recovery, not its end."""
        if isinstance(e, Finished):
            emit(Log("info" if e.exit_code == 0 else "error", f"{e.verdict}: {e.summary}"))
            results[current[0]] = e
        else:
            emit(e)

    async def phase(name: str, what: str, run: Callable[[], Any]) -> bool:
        current[0] = name
        emit(StepStarted(name, what))
        t0 = time.monotonic()
        code = await run()
        timings[name] = round(time.monotonic() - t0, 1)
        ok = code in (0, None)
        emit(
            StepFinished(name, ok, f"{timings[name]:.1f} s" if ok else f"failed after {timings[name]:.1f} s")
        )
        return ok

    if not await phase(
        "provision",
        "fresh servers, network, load balancer and K3s",
        lambda: run_provision(config, sub, workloads=False),
    ):
        return _failed(emit, "provision", timings, results)
    fresh = fresh_config(config)
    if not await phase("restore-cluster", "etcd snapshot from the latest cluster archive",
                       lambda: run_restore_cluster(fresh, sub, "latest", True)):  # fmt: skip
        return _failed(emit, "restore-cluster", timings, results)

    async def wait_cnpg() -> int:
        return await _check(emit, "CNPG not healthy", _cnpg_healthy(fresh, 300))

    if not await phase("database-ready", "CNPG bootstraps the instances again", wait_cnpg):
        return _failed(emit, "database-ready", timings, results)
    rows: dict[str, int] = {}
    for db in config.database.databases:
        ok = await phase(f"restore-{db}", f"{db} from the latest database archive",
                         partial(run_restore_db, fresh, sub, db, "latest", db, True, True))  # fmt: skip
        if not ok:
            return _failed(emit, f"restore-{db}", timings, results)
        done = results.get(f"restore-{db}")
        rows[db] = sum((done.report.get("row_counts") or {}).values()) if isinstance(done, Finished) else 0

    async def verify() -> int:
        return await _check(emit, "production is not serving", _serving(fresh, 120))

    if not await phase("verify", "production answers through the new load balancer", verify):
        return _failed(emit, "verify", timings, results)
    ip = await asyncio.to_thread(_lb_ipv4, config)
    total = time.monotonic() - started
    low, high = SEED_ESTIMATE_MIN
    emit(Log("dns", f"point {', '.join(sorted({r.name for r in config.dns if r.type == 'A'}))} at {ip}"))
    emit(
        Finished(
            "DONE",
            0,
            f"recovered in {total / 60:.1f} min (the seed estimates {low}–{high} min); "
            f"DocFast serves the restored data; new load balancer IPv4 {ip}",
            {"timings_s": timings, "total_s": round(total, 1), "seed_estimate_min": [low, high],
             "rows_restored": rows, "load_balancer_ipv4": ip},
        )
    )  # fmt: skip
    return 0


async def _check(emit: Callable[[Event], None], label: str, waiting: Awaitable[str | None]) -> int:
    """A wait as a step's exit code: 0 when it ended well, else 1 with why in the log."""
    why = await waiting
    if why is not None:
        emit(Log("error", f"{label}: {why}"))
    return 0 if why is None else 1


def _failed(
    emit: Callable[[Event], None], step: str, timings: dict[str, float], results: dict[str, Any]
) -> int:
    done = results.get(step)
    why = done.summary if isinstance(done, Finished) else "see the lines above"
    emit(
        Finished(
            "FAIL",
            EXIT_FAILED,
            f"recovery stopped at {step}: {why} — every step converges, run `--action recover --yes` again",
            {"timings_s": timings},
        )
    )
    return EXIT_FAILED
