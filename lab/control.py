"""The lab's own control API (loopback, bearer token in ``DIR/secrets/control-token``).

Not part of any twin: it is how `opsconsole lab fault …` and the tests act *behind the console's back*
(power a server off without the Hetzner API, make an API fail for N seconds, freeze the rate-limit clock)
and read the lab's ground truth (when each target was actually unhealthy; schema violations).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from lab.hetzner.app import HetznerApi
from lab.kube.cluster import FAULT_ANNOTATION
from lab.twin import KubeParts

POD_FAULTS = ("crash", "oom", "bad-image", "unschedulable")


def fault_deployment(kind: str, namespace: str, name: str) -> dict[str, Any]:
    """One replica that goes wrong the ``kind`` way: its container exits, runs over its memory limit,
    names an image no registry has, or asks for a node that does not exist."""
    container: dict[str, Any] = {"name": "app", "image": "git.cloonar.com/openclawd/docfast:latest"}
    template: dict[str, Any] = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}}
    if kind in ("crash", "oom"):
        template["metadata"]["annotations"] = {FAULT_ANNOTATION: kind}
    if kind == "oom":
        container["resources"] = {"limits": {"memory": "16Mi"}, "requests": {"memory": "16Mi"}}
    if kind == "bad-image":
        container["image"] = "git.cloonar.com/openclawd/docfast:v0-does-not-exist"
    if kind == "unschedulable":
        template["spec"]["nodeSelector"] = {"lab.opsconsole.dev/nowhere": "true"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template},
    }


def control_app(
    token: str,
    hetzner: HetznerApi,
    kube: KubeParts,
    cnpg: Any = None,
    nodes: Any = None,
    dns: Any = None,
    forge: Any = None,
) -> web.Application:
    floods: set[asyncio.Future[None]] = set()

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {token}":
            return web.json_response({"error": "bad control token"}, status=401)
        try:
            resp: web.StreamResponse = await handler(request)
            return resp
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)

    app = web.Application(middlewares=[auth])
    project = hetzner.project

    async def status(_: web.Request) -> web.Response:
        stats = hetzner.stats
        return web.json_response(
            {
                "hetzner": {
                    "requests": stats.requests,
                    "validated": stats.validated,
                    "violations": stats.violations,
                    "by_route": stats.by_route,
                    "budget": hetzner.budget.headers(),
                },
                "servers": {s["name"]: s["status"] for s in project.servers.values()},
            }
        )

    async def budget(request: web.Request) -> web.Response:
        body = await request.json()
        if "freeze" in body:
            hetzner.budget.freeze(bool(body["freeze"]))
        if "advance_s" in body:
            hetzner.budget.advance(float(body["advance_s"]))
        if "remaining" in body:
            hetzner.budget.set_remaining(int(body["remaining"]))
        return web.json_response(hetzner.budget.headers())

    async def fault_hetzner(request: web.Request) -> web.Response:
        """``{"errors_s": N}`` 500s, ``{"latency_ms": M, "for_s": N}``, ``{"throttle_s": N}`` 429s."""
        hetzner.faults.apply(await request.json())
        return web.json_response({"ok": True})

    async def power(request: web.Request) -> web.Response:
        """Power a server off/on behind the API's back (no action is recorded, as with a host failure)."""
        body = await request.json()
        name = request.match_info["name"]
        server = next((s for s in project.servers.values() if s["name"] == name), None)
        if server is None:
            return web.json_response({"error": f"no server {name!r}"}, status=404)
        server["status"] = "running" if body["state"] == "on" else "off"
        project.emit("server", server)
        return web.json_response({"server": name, "status": server["status"]})

    async def truth(request: web.Request) -> web.Response:
        since = float(request.query.get("since", 0))
        return web.json_response(
            {
                "target_health": [e for e in project.health_log if e["at"] >= since],
                "nodes": [e for e in kube.cluster.ground if e["at"] >= since],
                "lb_requests": [e for e in kube.dataplane.lb_log if e["at"] >= since],
            }
        )

    async def fault_kube(request: web.Request) -> web.Response:
        """As ``/fault/hetzner``, plus ``drop_watches`` and ``compact`` (old watches then get 410)."""
        body = await request.json()
        kube.api.faults.apply(body)
        if body.get("compact"):
            kube.store.compact()
        if body.get("drop_watches"):
            kube.store.drop_watches()
        return web.json_response({"ok": True})

    async def pod_fault(request: web.Request) -> web.Response:
        """``{"kind": "crash|oom|bad-image|unschedulable"}`` starts a Deployment ``fault-<kind>`` in the
        staging namespace whose pod misbehaves so; ``{"kind": …, "clear": true}`` deletes it again."""
        body = await request.json()
        kind = str(body["kind"])
        if kind not in POD_FAULTS:
            return web.json_response({"error": f"kind: one of {', '.join(POD_FAULTS)}"}, status=400)
        res, ns, name = kube.cluster.res["deployments"], "docfast-staging", f"fault-{kind}"
        if body.get("clear"):
            if kube.store.find(res, ns, name) is not None:
                kube.store.delete(res, ns, name)
            kube.cluster._wake.set()
            return web.json_response({"cleared": f"{ns}/{name}"})
        if kube.store.find(res, ns, name) is None:
            kube.store.create(res, fault_deployment(kind, ns, name), ns)
        kube.cluster._wake.set()
        return web.json_response({"started": f"{ns}/{name}"})

    async def log_flood(request: web.Request) -> web.Response:
        """``{"rate": lines/s, "seconds": s}``: the pod writes numbered lines that fast, in the background
        (a log to follow at load: bench/cockpit.py).  Answers at once with how many lines it will write."""
        ns, name = request.match_info["namespace"], request.match_info["name"]
        body = await request.json()
        rate, seconds = float(body.get("rate", 1000)), float(body.get("seconds", 10))
        kube.store.get(kube.cluster.res["pods"], ns, name)
        total = int(rate * seconds)

        async def flood() -> None:
            loop = asyncio.get_running_loop()
            written, t0 = 0, loop.time()
            while written < total:
                due = min(total, int((loop.time() - t0) * rate))
                while written < due:
                    kube.api.log_line(ns, name, f"flood line {written} sent {time.time():.6f}")
                    written += 1
                await asyncio.sleep(0.01)

        floods.add(asyncio.ensure_future(flood()))
        return web.json_response({"lines": total})

    async def kill_pod(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        kube.store.delete(kube.cluster.res["pods"], ns, name, grace=0)
        kube.cluster._wake.set()
        return web.json_response({"killed": f"{ns}/{name}"})

    async def db_fault(request: web.Request) -> web.Response:
        """``{"crash_primary": true}`` or ``{"receiver": "main-db-2", "paused": true|false}``."""
        if cnpg is None:
            return web.json_response({"error": "no database in this scenario"}, status=409)
        body = await request.json()
        if body.get("crash_primary"):
            return web.json_response({"crashed": await cnpg.crash_primary()})
        await cnpg.pause_receiver(body["receiver"], bool(body.get("paused", True)))
        return web.json_response({"receiver": body["receiver"], "paused": bool(body.get("paused", True))})

    async def db_info(_: web.Request) -> web.Response:
        if cnpg is None:
            return web.json_response({"error": "no database in this scenario"}, status=409)
        return web.json_response(
            {
                "primary": cnpg.primary,
                "ports": {n: i.port for n, i in cnpg.instances.items()},
                "poolers": {n: b.port for n, b in cnpg.poolers.items()},
                "events": cnpg.ground,
            }
        )

    if nodes is not None:
        nodes.routes(app)

    async def destroy(_: web.Request) -> web.Response:
        """Everything destroyed — the seed's disaster: the project's servers, load balancer, network and
        firewall; the cluster's datastore; the nodes' and the database's disks.  The Storage Box (off-site)
        survives; so does the lab's API (it answers an empty cluster, as a fresh one would)."""
        from lab import k3s

        hetzner_counts = project.destroy_everything()
        if cnpg is not None:
            await cnpg.destroy()
        objects = k3s.wipe(kube, nodes.lab_dir, [n.name for n in nodes.config.nodes]) if nodes else 0
        if nodes is not None:
            await nodes.ssh.sync()
        return web.json_response({"hetzner": hetzner_counts, "kubernetes_objects": objects})

    async def dns_set(request: web.Request) -> web.Response:
        """``{"name": "docfast.dev", "type": "A", "values": ["…"]}``: the registrar's side of "update DNS"
        (the seed's zone is not at Hetzner; the console reports the new address, an operator sets it)."""
        body = await request.json()
        key = (str(body["name"]).rstrip(".").lower(), str(body["type"]).upper())
        dns.records[key] = [str(v) for v in body["values"]]
        return web.json_response({"name": key[0], "type": key[1], "values": dns.records[key]})

    if dns is not None:
        app.router.add_post("/dns", dns_set)

    async def forge_push(request: web.Request) -> web.Response:
        """The forge repository's post-receive hook: ``{"refs": [{"old", "new", "ref"}]}``."""
        body = await request.json()
        return web.json_response({"started": forge.on_push(list(body["refs"]))})

    async def forge_runs(_: web.Request) -> web.Response:
        return web.json_response({"runs": forge.runs, "tags": forge.images.tags})

    if forge is not None:
        app.router.add_post("/forge/push", forge_push)
        app.router.add_get("/forge", forge_runs)
    app.router.add_post("/fault/destroy", destroy)
    app.router.add_get("/status", status)
    app.router.add_post("/budget", budget)
    app.router.add_post("/fault/hetzner", fault_hetzner)
    app.router.add_post("/servers/{name}/power", power)
    app.router.add_get("/truth", truth)
    app.router.add_post("/fault/db", db_fault)
    app.router.add_get("/db", db_info)
    app.router.add_post("/fault/kube", fault_kube)
    app.router.add_post("/pods/{namespace}/{name}/kill", kill_pod)
    app.router.add_post("/pods/{namespace}/{name}/log-flood", log_flood)
    app.router.add_post("/fault/pod", pod_fault)
    return app
