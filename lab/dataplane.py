"""The lab's data plane: real listeners on loopback for what users and probes actually reach.

* Each DocFast pod is a small real HTTP server (``/health``, ``/version``) on its own loopback port; its
  pod IP maps to that port.  An image tag ending in ``-broken`` (or ``-broken-in-<namespace>``: in that
  namespace only) answers ``/health`` with 503 (for promotion drills).
* Each node runs an ingress (Traefik's role) while its server is up and its Traefik pod runs: an HTTP
  reverse proxy that routes by ``Host`` through the Ingress objects to the Service's *ready* endpoints.
* The load balancer listens for its port-80 service and forwards TCP to a healthy target's ingress,
  round robin.  Its health checks are real TCP connects to each target's ingress.

How failures look on the wire (loopback cannot drop SYNs, so the load balancer emulates it):
a **powered-off server** is a black hole — a connection the load balancer sends there gets no answer and
is closed after the health check's timeout (clients see a hang, then an empty reply); a **stopped
process** (k3s or Traefik down, node up) refuses at once (clients see an immediate failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from lab.hetzner.project import HetznerProject
from lab.kube.cluster import Cluster
from lab.kube.store import Store

log = logging.getLogger("lab.dataplane")
LOOPBACK = "127.0.0.1"


class PodServer:
    """One DocFast pod's process."""

    def __init__(
        self,
        pod: dict[str, Any],
        health: Callable[[dict[str, Any]], Any] | None = None,
        log: Callable[[str, str, str], None] | None = None,
        version: str | None = None,
    ) -> None:
        self.namespace = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        image = pod["spec"]["containers"][0].get("image", "")
        self.image = image
        self.version = version or (image.rsplit(":", 1)[-1] if ":" in image else "latest")
        self.health = health
        self.log = log or (lambda ns, pod, line: None)
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> int:
        app = web.Application(middlewares=[self._access_log])
        app.router.add_get("/health", self._health)
        app.router.add_get("/version", self._version)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, LOOPBACK, 0)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        self.log(self.namespace, self.name, f"docfast {self.version} listening on :3000")
        return self.port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @web.middleware
    async def _access_log(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every request it serves, one line each, as DocFast's access log writes it."""
        started = time.monotonic()
        response: web.StreamResponse = await handler(request)
        ms = (time.monotonic() - started) * 1000
        self.log(
            self.namespace, self.name, f"{request.method} {request.path_qs} {response.status} {ms:.1f}ms"
        )
        return response

    async def _health(self, request: web.Request) -> web.Response:
        return await self._health_answer()

    async def _health_answer(self) -> web.Response:
        if self.version.endswith("-broken") or self.version.endswith(f"-broken-in-{self.namespace}"):
            return web.json_response({"status": "error", "error": "release self-test failed"}, status=503)
        if self.health is not None:
            ok, detail = await self.health(self.__dict__)
            if not ok:
                return web.json_response({"status": "error", "database": detail}, status=503)
        return web.json_response({"status": "ok", "version": self.version, "pod": self.name})

    async def _version(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"version": self.version, "image": self.image, "pod": self.name, "namespace": self.namespace}
        )


class DataPlane:
    def __init__(self, store: Store, cluster: Cluster, project: HetznerProject, speed: float) -> None:
        self.store = store
        self.cluster = cluster
        self.project = project
        self.speed = speed
        self.pods: dict[str, PodServer] = {}
        self.ip_ports: dict[str, int] = {}
        self.ingress: dict[str, tuple[web.AppRunner, int]] = {}
        self.k3s_stopped: set[str] = set()
        self.upgrade_fails: dict[str, str] = {}  # node → the one K3s version that starts there (lab fault)
        self.partitioned: set[str] = set()  # cut off from the other nodes and the API (lab fault)
        self.on_sync: list[Callable[[], Any]] = []
        self.lb_server: asyncio.AbstractServer | None = None
        self.lb_port = 0
        self.lb_log: list[dict[str, Any]] = []  # ground truth: every connection through the load balancer
        self._rr = itertools.count()
        self._rr_backend = itertools.count()
        self._http: aiohttp.ClientSession | None = None
        self._sync_pending = False
        self._sync_lock = asyncio.Lock()
        self.db_health: Callable[[dict[str, Any]], Any] | None = None
        self.log: Callable[[str, str, str], None] = lambda ns, pod, line: None
        self.extra_probes: list[Callable[[dict[str, Any]], Any]] = []

    # ---- nodes ---------------------------------------------------------------------------------------

    def server_of(self, node: str) -> dict[str, Any] | None:
        return next((s for s in self.project.servers.values() if s["name"] == node), None)

    def node_alive(self, node: str) -> bool:
        if node in self.cluster.virtual_nodes:
            return True
        server = self.server_of(node)
        return (
            server is not None
            and server["status"] == "running"
            and server["id"] not in self.project.rebooting
            and node not in self.k3s_stopped
            and node not in self.partitioned
        )

    def powered(self, node: str) -> bool:
        """The server is on (SSH answers), whatever k3s does."""
        server = self.server_of(node)
        return (
            server is not None
            and server["status"] == "running"
            and server["id"] not in self.project.rebooting
        )

    def on_hetzner(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "server_booted":  # the node's kubelet is back, with the new boot's ID
            node = self.store.find(self.cluster.res["nodes"], None, obj["name"])
            if node is not None:
                node = copy.deepcopy(node)
                node["status"].setdefault("nodeInfo", {})["bootID"] = str(uuid.uuid4())
                self.store.update(self.cluster.res["nodes"], node, subresource="status", force=True)
        if kind in ("server", "server_deleted", "server_rebooted", "server_booted"):
            self.schedule_sync()

    def schedule_sync(self) -> None:
        if not self._sync_pending:
            self._sync_pending = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self.sync()))

    async def sync(self) -> None:
        """Make the listeners match reality: processes die with their node, ingresses follow Traefik."""
        self._sync_pending = False
        async with self._sync_lock:  # one at a time: a listener is never started twice
            await self._sync()

    async def _sync(self) -> None:
        pods_res = self.cluster.res["pods"]
        for key in list(self.pods):
            ns, name = key.split("/", 1)
            pod = self.store.find(pods_res, ns, name)
            node = pod["spec"].get("nodeName") if pod else None
            if pod is None or (node and not self.node_alive(node)):
                await self._stop_pod(key)
        for node in self.cluster.managed_nodes():
            name = node["metadata"]["name"]
            traefik = any(
                p["spec"].get("nodeName") == name
                and p.get("status", {}).get("phase") == "Running"
                and not p["metadata"].get("deletionTimestamp")
                and (p["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == "traefik"
                for p in self.store.list(pods_res, "kube-system")
            )
            want = self.node_alive(name) and traefik
            if want and name not in self.ingress:
                await self._start_ingress(name)
            elif not want and name in self.ingress:
                runner, _ = self.ingress.pop(name)
                await runner.cleanup()
        for hook in self.on_sync:
            await hook()
        self.cluster._wake.set()

    # ---- pods ----------------------------------------------------------------------------------------

    async def on_pod_start(self, pod: dict[str, Any]) -> None:
        if (pod["metadata"].get("labels") or {}).get("app") != "docfast":
            return
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        if key in self.pods:
            return
        server = PodServer(
            pod,
            self.db_health,
            self.log,
            self.cluster.images.version(pod["spec"]["containers"][0].get("image", "")),
        )
        self.pods[key] = server  # claimed before the await: a second start of this pod returns above
        port = await server.start()
        ip = pod.get("status", {}).get("podIP")
        if ip:
            self.ip_ports[ip] = port

    async def on_pod_stop(self, pod: dict[str, Any]) -> None:
        await self._stop_pod(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}")

    async def _stop_pod(self, key: str) -> None:
        server = self.pods.pop(key, None)
        if server is not None:
            self.ip_ports = {ip: p for ip, p in self.ip_ports.items() if p != server.port}
            await server.stop()

    async def probe(self, pod: dict[str, Any], probe: dict[str, Any]) -> bool:
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        server = self.pods.get(key)
        if server is None:
            return False
        http = probe.get("httpGet") or {"path": "/health"}
        timeout = max(0.2, float(probe.get("timeoutSeconds", 1)) * self.speed)
        try:
            assert self._http is not None
            async with self._http.get(
                f"http://{LOOPBACK}:{server.port}{http.get('path', '/')}",
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                return 200 <= resp.status < 400
        except (aiohttp.ClientError, TimeoutError):
            return False

    def cluster_probe(self, pod: dict[str, Any], probe: dict[str, Any]) -> Any:
        if (pod["metadata"].get("labels") or {}).get("app") == "docfast":
            return self.probe(pod, probe)
        for extra in self.extra_probes:
            result = extra(pod)
            if result is not None:
                return result
        return None

    # ---- ingress -------------------------------------------------------------------------------------

    async def _start_ingress(self, node: str) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._route)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        self.ingress[node] = (runner, port)

    def backends(self, host: str) -> list[int]:
        """Ports of the ready pods behind the Ingress rule for ``host``."""
        ing_res = self.store.resources.get("networking.k8s.io/ingresses")
        if ing_res is None:
            return []
        for ing in self.store.list(ing_res):
            for rule in ing["spec"].get("rules", []):
                if rule.get("host") != host:
                    continue
                svc = rule["http"]["paths"][0]["backend"]["service"]["name"]
                ep = self.store.find(self.cluster.res["endpoints"], ing["metadata"]["namespace"], svc)
                ports = []
                for subset in (ep or {}).get("subsets", []):
                    for addr in subset.get("addresses", []):
                        if addr["ip"] in self.ip_ports:
                            ports.append(self.ip_ports[addr["ip"]])
                return ports
        return []

    async def _route(self, request: web.Request) -> web.StreamResponse:
        host = request.host.split(":")[0]
        ports = self.backends(host)
        if not ports:
            return web.Response(status=503, text="no available server")
        port = ports[next(self._rr_backend) % len(ports)]
        assert self._http is not None
        try:
            async with self._http.request(
                request.method,
                f"http://{LOOPBACK}:{port}{request.path_qs}",
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                body = await resp.read()
                return web.Response(status=resp.status, body=body, content_type=resp.content_type)
        except (aiohttp.ClientError, TimeoutError):
            return web.Response(status=502, text="Bad Gateway")

    # ---- load balancer -------------------------------------------------------------------------------

    async def target_probe(self, server: dict[str, Any], port: int) -> bool:
        """The load balancer's TCP health check: a real connect to the target's ingress."""
        entry = self.ingress.get(server["name"])
        if server["status"] != "running" or entry is None:
            return False
        try:
            _, writer = await asyncio.open_connection(LOOPBACK, entry[1])
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def start_lb(self, lb_id: int, name: str = "") -> int:
        """The load balancer's public listener.  It serves the project's load balancer with this ID, or —
        after a provision or a recovery created a new one — the one with this name."""
        self.lb_id = lb_id
        self.lb_name = name
        self.lb_server = await asyncio.start_server(self._lb_conn, LOOPBACK, 0)
        self.lb_port = int(self.lb_server.sockets[0].getsockname()[1])
        return self.lb_port

    async def _lb_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.time()
        record: dict[str, Any] = {"at": started, "target": None, "ok": False}
        self.lb_log.append(record)
        del self.lb_log[:-20000]
        lb = self.project.load_balancers.get(self.lb_id) or next(
            (b for b in self.project.load_balancers.values() if b["name"] == self.lb_name), None
        )
        try:
            # The request's first bytes name its virtual host, so the truth tells prod from staging even
            # for connections that never reached a target (port 80 speaks HTTP: the client talks first).
            try:
                head = await asyncio.wait_for(reader.read(65536), 2.0)
            except (TimeoutError, ConnectionError, OSError):
                head = b""
            record["host"] = _host_header(head)
            if lb is None:
                return
            healthy = [
                t["server"]["id"]
                for t in lb["targets"]
                if t["type"] == "server"
                and self.project.health.get((lb["id"], t["server"]["id"], 80)) is not None
                and self.project.health[(lb["id"], t["server"]["id"], 80)].status == "healthy"
            ]
            if not healthy:
                record["error"] = "no healthy target"
                return
            sid = healthy[next(self._rr) % len(healthy)]
            server = self.project.servers.get(sid)
            record["target"] = server["name"] if server else sid
            if server is None or server["status"] != "running":
                svc = next((s for s in lb["services"] if s["listen_port"] == 80), None)
                await asyncio.sleep((svc["health_check"]["timeout"] if svc else 10) * self.speed)
                record["error"] = "target powered off (timed out)"
                return
            entry = self.ingress.get(server["name"])
            if entry is None:
                record["error"] = "target refused"
                return
            try:
                up_r, up_w = await asyncio.open_connection(LOOPBACK, entry[1])
            except OSError:
                record["error"] = "target refused"
                return
            first = True
            if head:
                up_w.write(head)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, sniff: bool) -> None:
                nonlocal first
                with contextlib.suppress(ConnectionError, OSError):
                    while data := await src.read(65536):
                        if sniff and first:
                            first = False
                            record["ok"] = data.startswith(b"HTTP/1.1 2") or data.startswith(b"HTTP/1.0 2")
                            record["status"] = data[9:12].decode(errors="replace")
                        dst.write(data)
                        await dst.drain()
                with contextlib.suppress(OSError):
                    dst.close()

            await asyncio.gather(pipe(reader, up_w, False), pipe(up_r, writer, True))
        finally:
            record["duration"] = time.time() - started
            with contextlib.suppress(OSError):
                writer.close()

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()

    async def close(self) -> None:
        if self.lb_server is not None:
            self.lb_server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.lb_server.wait_closed(), 2)
        for key in list(self.pods):
            await self._stop_pod(key)
        for runner, _ in self.ingress.values():
            await runner.cleanup()
        self.ingress.clear()
        if self._http is not None:
            await self._http.close()


def _host_header(request: bytes) -> str | None:
    """The Host of an HTTP request's first bytes (ground truth per virtual host: prod vs staging)."""
    for line in request.split(b"\r\n")[1:]:
        if not line:
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            return value.strip().decode(errors="replace").split(":")[0]
    return None
