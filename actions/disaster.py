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

from actions.provision import fresh_config
from console.action import Outcome
from console.clients.hetzner import client
from console.clients.kube import KubeError, request
from console.config import Config
from console.errors import ActionFailed, Verdict
from console.events import Finished, Log, StepFinished, StepStarted
from console.runner import Run, run_sub
from console.sources.http import probe

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


async def run_disaster_recovery(run: Run, timings: dict[str, float]) -> Outcome:
    """The recovery's steps, each an action of its own run through the pipeline (journal, lock); each
    step's time goes into ``timings`` as it ends (the report's, whether it ends well or not)."""
    from actions.provision import Provision, ProvisionParams
    from actions.restore import Restore, RestoreCluster, RestoreClusterParams, RestoreParams

    config, emit = run.config, run.emit
    started = time.monotonic()
    results: dict[str, Finished] = {}

    async def phase(name: str, what: str, step: Callable[[], Awaitable[Finished | str | None]]) -> None:
        emit(StepStarted(name, what))
        t0 = time.monotonic()
        done = await step()
        timings[name] = round(time.monotonic() - t0, 1)
        if isinstance(done, Finished):
            results[name] = done
            why = None if done.exit_code == 0 else done.summary
        else:
            why = done
        ok = why is None
        emit(
            StepFinished(name, ok, f"{timings[name]:.1f} s" if ok else f"failed after {timings[name]:.1f} s")
        )
        if not ok:
            raise ActionFailed(
                f"recovery stopped at {name}: {why} — every step converges, "
                "run `--action recover --yes` again"
            )

    await phase("provision", "fresh servers, network, load balancer and K3s",
                lambda: run_sub(run, Provision(config, ProvisionParams(workloads=False))))  # fmt: skip
    fresh = fresh_config(config)
    await phase("restore-cluster", "etcd snapshot from the latest cluster archive",
                lambda: run_sub(run, RestoreCluster(fresh, RestoreClusterParams())))  # fmt: skip
    await phase("database-ready", "CNPG bootstraps the instances again", lambda: _cnpg_healthy(fresh, 300))
    rows: dict[str, int] = {}
    for db in config.database.databases:
        restore = Restore(fresh, RestoreParams(db=db, archive="latest", into=db, i_mean_production=True))
        await phase(f"restore-{db}", f"{db} from the latest database archive", partial(run_sub, run, restore))
        report = results[f"restore-{db}"].report
        rows[db] = sum((getattr(report, "row_counts", None) or {}).values())
    await phase("verify", "production answers through the new load balancer", lambda: _serving(fresh, 120))
    ip = await asyncio.to_thread(_lb_ipv4, config)
    total = time.monotonic() - started
    low, high = SEED_ESTIMATE_MIN
    emit(Log("dns", f"point {', '.join(sorted({r.name for r in config.dns if r.type == 'A'}))} at {ip}"))
    summary = (
        f"recovered in {total / 60:.1f} min (the seed estimates {low}–{high} min); "
        f"DocFast serves the restored data; new load balancer IPv4 {ip}"
    )
    report = {
        "timings_s": timings,
        "total_s": round(total, 1),
        "seed_estimate_min": [low, high],
        "rows_restored": rows,
        "load_balancer_ipv4": ip,
    }
    return Outcome(Verdict.DONE, summary, report)
