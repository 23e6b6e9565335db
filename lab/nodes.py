"""The nodes' host side and the Storage Box: SSH, K3s service control, etcd snapshots, Borg.

Wires :mod:`lab.ssh`, :mod:`lab.k3s` and :mod:`lab.storagebox` to the twin and serves their part of the
control API (used by the lab programs in SSH sessions and by ``opsconsole lab fault``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from console.config import Config
from lab import k3s
from lab.kube.seed import coredns
from lab.postgres import PG_BIN
from lab.ssh import LabSsh, in_cluster_resolver
from lab.storagebox import StorageBox

log = logging.getLogger("lab.nodes")
BIN = Path(__file__).resolve().parent / "bin"
SERVER_MANIFESTS = (
    "coredns.yaml",
    "local-storage.yaml",
    "metrics-server",
    "traefik.yaml",
    "rolebindings.yaml",
    "ccm.yaml",
)


class NodeServices:
    def __init__(
        self,
        lab_dir: Path,
        config: Config,
        kube: Any,
        cnpg: Any,
        control_url: str,
        control_token: str,
        kubeconfig: Path,
    ) -> None:
        self.lab_dir = lab_dir
        self.config = config
        self.kube = kube
        self.cnpg = cnpg
        self.kubeconfig = kubeconfig
        self.server_node = next(n.name for n in config.nodes if n.role == "server")
        account = config.backups.storage_box.split("@", 1)[0]
        self.env = env = {
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "LAB_CONTROL_URL": control_url,
            "LAB_CONTROL_TOKEN": control_token,
            "LAB_KUBECONFIG": str(kubeconfig),
            "LANG": "C.UTF-8",
        }
        dp = kube.dataplane
        self.ssh = LabSsh(
            lab_dir,
            [n.name for n in config.nodes],
            account,
            env,
            in_cluster_resolver(kube.store, kube.cluster, dp),
            dp.powered,
            lab_dir / "forge" / "home",
        )
        self.box = StorageBox(lab_dir, account)
        self._seed_task: asyncio.Task[None] | None = None
        dp.on_sync.append(self.ssh.sync)

    async def start(self) -> dict[str, int]:
        for node in self.config.nodes:
            fs = k3s.node_fs(self.lab_dir, node.name)
            (fs / "root").mkdir(parents=True, exist_ok=True)
            self.ssh.hosts[node.name].home = fs / "root"
        self._write_server_manifests()
        k3s.ensure_token(self.kube, self.lab_dir, self.server_node)
        ports = await self.ssh.start()
        await self.ssh.sync()  # nodes without a running server (the empty scenario) do not answer
        await self.box.init()
        self.box.write_env(self.lab_dir / "ssh" / "config")
        now = datetime.now(UTC)
        latest = now.replace(hour=3, minute=0, second=0, microsecond=0)
        if latest > now:  # before 03:00 UTC the newest daily snapshot is yesterday's
            latest -= timedelta(days=1)
        for days_ago in range(4, -1, -1):  # the seed's daily snapshots, retention 5
            when = latest - timedelta(days=days_ago)
            k3s.save(self.kube.store, self.lab_dir, self.server_node, when=when.timestamp())
        self._seed_task = asyncio.ensure_future(self._seed_box())
        return ports

    def _write_server_manifests(self) -> None:
        manifests = k3s.node_fs(self.lab_dir, self.server_node) / "var/lib/rancher/k3s/server/manifests"
        manifests.mkdir(parents=True, exist_ok=True)
        (manifests / "coredns.yaml").write_text(yaml.safe_dump(coredns(ha=False), sort_keys=False))
        for name in ("local-storage.yaml", "traefik.yaml", "rolebindings.yaml"):
            (manifests / name).write_text(f"# K3s packaged manifest {name} (lab placeholder)\n")

    async def _seed_box(self) -> None:
        seed_dir = self.lab_dir / "storagebox-seed"
        db_dir, cluster_dir = seed_dir / "db", seed_dir / "cluster"
        for d in (db_dir, cluster_dir):
            d.mkdir(parents=True, exist_ok=True)
        running_db = await self._dump_databases(db_dir)
        self._cluster_files(cluster_dir)
        await self.box.seed(db_dir, cluster_dir)
        if running_db and self.box.ready:
            latest = max(self.box.seeded_times["k3s-db"])
            self.cnpg._status_patch({"lastSuccessfulBackup": latest.strftime("%Y-%m-%dT%H:%M:%SZ")})
        await self._scheduled_backups()

    async def _scheduled_backups(self) -> None:
        """The seed's schedules keep running while the lab does: the pg_dump CronJob every 6 hours
        (``0 */6 * * *``) and the daily cluster backup at 03:00 UTC, each one archive at its tick — so a lab
        that outlives a tick is not overdue by the clock.  Like the real jobs they fail (and are skipped)
        while the Storage Box is unreachable or the database is gone; a held lock makes Borg give up."""
        while True:
            now = datetime.now(UTC)
            base = now.replace(minute=0, second=0, microsecond=0)
            ticks = [base + timedelta(hours=h) for h in range(1, 25)]
            db_tick = next(t for t in ticks if t.hour % 6 == 0)
            cluster_tick = next(t for t in ticks if t.hour == 3)
            tick = min(db_tick, cluster_tick)
            await asyncio.sleep((tick - now).total_seconds())
            for repo, due in (("k3s-db", db_tick), ("k3s-cluster", cluster_tick)):
                if due == tick:
                    try:
                        await self.scheduled_job(repo, tick)
                    except Exception as exc:
                        log.warning("scheduled backup into %s at %s failed: %s", repo, tick.isoformat(), exc)

    async def scheduled_job(self, repo: str, when: datetime) -> str:
        """One run of the scheduled backup into ``repo`` (``k3s-db``: the pg_dump CronJob; ``k3s-cluster``:
        the daily cluster backup), archived as taken at ``when``; the archive's name."""
        work = self.lab_dir / "storagebox-seed" / f"job-{repo}"
        work.mkdir(parents=True, exist_ok=True)
        if not self.ssh.storagebox_up:
            raise RuntimeError("the Storage Box is unreachable")
        if repo == "k3s-db":
            if not await self._dump_databases(work):
                raise RuntimeError("no database to dump")
        else:
            self._cluster_files(work)
        name = await self.box.add(repo, when, work)
        log.info("scheduled backup %s", name)
        return name

    def backup_job(self, pod: dict[str, Any], container: dict[str, Any]) -> Any:
        """What the seed's pg_dump CronJob's pod runs (lab/kube/runtime.py): the scheduled backup into
        ``k3s-db``, now — so ``kubectl create job --from=cronjob/main-db-backup`` takes a real one, and
        fails as the job would (exit 1) when the Storage Box or the database is not there."""
        labels = pod["metadata"].get("labels") or {}
        if pod["metadata"]["namespace"] != self.config.database.namespace or labels.get("app") != "db-backup":
            return None

        async def run() -> tuple[int, list[str]]:
            try:
                name = await self.scheduled_job("k3s-db", datetime.now(UTC))
            except Exception as exc:
                return 1, [f"backup failed: {exc}"]
            dbs = ", ".join(self.config.database.databases)
            return 0, [f"pg_dump -Fc: {dbs}", f"borg create {self.box.url('k3s-db')}::{name}: done"]

        return run()

    async def _dump_databases(self, db_dir: Path) -> bool:
        """``pg_dump -Fc`` of every database from the primary into ``db_dir``; False when there is no
        running database (an empty or destroyed lab)."""
        running_db = self.cnpg is not None and not self.cnpg.destroyed
        if running_db:
            primary = self.cnpg.instances[self.cnpg.primary]
            for name in self.config.database.databases:
                proc = await asyncio.create_subprocess_exec(
                    str(PG_BIN / "pg_dump"),  # the CronJob runs the server's own image
                    "-Fc",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(primary.port),
                    "-U",
                    self.config.database.app_user,
                    "-f",
                    str(db_dir / f"{name}.dump"),
                    name,
                    env={**os.environ, "PGPASSWORD": "docfast"},
                    stderr=asyncio.subprocess.PIPE,
                )
                _, err = await proc.communicate()
                if proc.returncode != 0:
                    log.error("pg_dump %s failed: %s", name, err.decode(errors="replace"))
        return running_db

    def _cluster_files(self, cluster_dir: Path) -> None:
        """What the daily cluster backup holds: an etcd snapshot and the server's manifests."""
        (cluster_dir / "etcd-snapshot").write_text(json.dumps(k3s.serialise(self.kube.store)))
        manifests = k3s.node_fs(self.lab_dir, self.server_node) / "var/lib/rancher/k3s/server/manifests"
        target = cluster_dir / "manifests"
        target.mkdir(exist_ok=True)
        for p in manifests.iterdir() if manifests.is_dir() else ():
            if p.is_file():
                (target / p.name).write_text(p.read_text())

    async def close(self) -> None:
        if self._seed_task is not None:
            self._seed_task.cancel()
            with contextlib.suppress(BaseException):
                await self._seed_task
        await self.box.close()
        await self.ssh.close()

    # ---- control API ----------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        store, registry, dp = self.kube.store, self.kube.registry, self.kube.dataplane

        async def etcd_save(request: web.Request) -> web.Response:
            body = await request.json()
            path = k3s.save(store, self.lab_dir, body["node"], body.get("name") or "on-demand")
            return web.json_response({"name": path.name, "path": str(path)})

        async def etcd_list(request: web.Request) -> web.Response:
            return web.json_response({"snapshots": k3s.listing(self.lab_dir, request.query["node"])})

        async def etcd_delete(request: web.Request) -> web.Response:
            body = await request.json()
            return web.json_response({"removed": k3s.delete(self.lab_dir, body["node"], body["names"])})

        async def etcd_prune(request: web.Request) -> web.Response:
            body = await request.json()
            return web.json_response(
                {"removed": k3s.prune(self.lab_dir, body["node"], int(body["retention"]))}
            )

        async def etcd_restore(request: web.Request) -> web.Response:
            body = await request.json()
            path = Path(body["path"].removeprefix("file://"))
            if not path.is_file():
                return web.json_response({"error": f"snapshot {path} not found"}, status=404)
            try:
                counts = k3s.restore(store, registry, path)
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            self.kube.cluster._wake.set()
            return web.json_response(counts)

        async def k3s_service(request: web.Request) -> web.Response:
            body = await request.json()
            node = body["node"]
            if body.get("query"):
                registered = self.kube.store.find(self.kube.registry.get("", "v1", "nodes"), None, node)
                state = "stopped" if node in dp.k3s_stopped or registered is None else "running"
                return web.json_response({"node": node, "k3s": state})
            if "upgrade_fails" in body:  # the lab fault: only the version it runs now starts on the node
                current = k3s.version_of(self.kube, node)
                if body["upgrade_fails"] and current:
                    dp.upgrade_fails[node] = current
                else:
                    dp.upgrade_fails.pop(node, None)
                return web.json_response({"node": node, "upgrade_fails": dp.upgrade_fails.get(node)})
            if body.get("version"):
                return web.json_response({"node": node, "version": k3s.version_of(self.kube, node)})
            if body.get("restarted"):
                from lab.twin import k3s_restarted

                return web.json_response({"reset": k3s_restarted(self.kube)})
            (dp.k3s_stopped.add if body.get("state") == "stopped" else dp.k3s_stopped.discard)(node)
            dp.schedule_sync()
            return web.json_response({"node": node, "k3s": body.get("state")})

        async def k3s_install(request: web.Request) -> web.Response:
            body = await request.json()
            try:
                message = k3s.install(
                    self.kube,
                    self.config,
                    self.lab_dir,
                    body["node"],
                    body["role"],
                    list(body.get("args") or []),
                    dict(body.get("env") or {}),
                    self.kubeconfig,
                )
                if message is None:
                    message = await k3s.reinstall(
                        self.kube, self.config, body["node"], body["role"], list(body.get("args") or []),
                        dict(body.get("env") or {}), self.kube.api.speed,
                    )  # fmt: skip
            except k3s.InstallError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.json_response({"message": message})

        async def storagebox(request: web.Request) -> web.Response:
            if request.method == "POST":
                body = await request.json()
                if "reachable" in body:
                    self.ssh.storagebox_up = bool(body["reachable"])
                    await self.ssh.sync()
                if body.get("lock"):
                    await self.box.lock(body["lock"])
                if body.get("unlock"):
                    await self.box.unlock(body["unlock"])
                if body.get("miss"):
                    deleted = await self.box.miss(body["miss"], float(body.get("hours", 12)))
                    return web.json_response({**self.box.status(), "deleted": deleted})
                if "run" in body:  # the scheduled job now (as `kubectl create job --from=cronjob/…`)
                    if body["run"] not in ("k3s-db", "k3s-cluster"):
                        raise ValueError(f"no scheduled backup into {body['run']!r}")
                    try:
                        name = await self.scheduled_job(body["run"], datetime.now(UTC))
                    except RuntimeError as exc:
                        return web.json_response({"error": str(exc)}, status=409)
                    return web.json_response({**self.box.status(), "archive": name})
            return web.json_response({**self.box.status(), "reachable": self.ssh.storagebox_up})

        async def partition(request: web.Request) -> web.Response:
            body = await request.json()
            (dp.partitioned.add if body.get("partitioned", True) else dp.partitioned.discard)(body["node"])
            dp.schedule_sync()
            return web.json_response({"node": body["node"], "partitioned": body["node"] in dp.partitioned})

        r = app.router
        r.add_post("/etcd/save", etcd_save)
        r.add_get("/etcd/list", etcd_list)
        r.add_post("/etcd/delete", etcd_delete)
        r.add_post("/etcd/prune", etcd_prune)
        r.add_post("/etcd/restore", etcd_restore)
        r.add_post("/k3s/service", k3s_service)
        r.add_post("/k3s/install", k3s_install)
        r.add_get("/storagebox", storagebox)
        r.add_post("/storagebox", storagebox)
        r.add_post("/fault/partition", partition)
