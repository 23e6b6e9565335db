"""The lab's background process: `opsconsole lab up` starts it detached (``python -m lab.daemon``).

It holds ``DIR/lab.lock`` for its whole life (so a second lab can never start on the same directory),
binds every listener on 127.0.0.1, writes the client files (``hcloud.env``, ``console.toml``), then
``state.json`` last.  SIGTERM/SIGINT stop it cleanly: listeners closed, children stopped, state removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import signal
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import tomli_w
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from console.config import Config, load_config
from lab.control import control_app
from lab.hetzner.app import HetznerApi
from lab.hetzner.project import HetznerProject
from lab.kube.timing import COMPONENT_FLAGS
from lab.seed import seed_hetzner
from lab.state import LabState, state_file, write_secret, write_state
from lab.twin import build_kube, server_ssl, write_kubeconfig

LOOPBACK = "127.0.0.1"
FAST_SPEED = 0.2  # --fast: every lab duration (actions, health-check intervals, grace periods) x 0.2
CLOSE_TIMEOUT_S = 5.0  # how long one part of the lab may take to close when it stops
log = logging.getLogger("lab")


def _ssh_keypair(lab_dir: Path) -> str:
    """The operator key the seed's servers trust (``openclaw``); reused across restarts of one lab dir."""
    key_path = lab_dir / "ssh" / "id_ed25519"
    if not key_path.exists():
        key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        pub = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        key_path.with_suffix(".pub").write_bytes(pub + b" openclaw@opsconsole-lab\n")
    return key_path.with_suffix(".pub").read_text().strip()


def _console_config(
    config_path: Path,
    lab_dir: Path,
    hetzner_url: str,
    token_file: Path,
    kubeconfig: Path,
    lb_address: str | None = None,
    dns_port: int | None = None,
    notify: list[dict[str, str]] | None = None,
) -> Path:
    """config.toml with the lab's endpoints and secret references; what `--lab` points the console at."""
    raw: dict[str, Any] = tomllib.loads(config_path.read_text())
    raw["hetzner"]["endpoint"] = hetzner_url
    raw["hetzner"].pop("token_env", None)
    raw["hetzner"]["token_file"] = str(token_file)
    raw["kubernetes"] = {
        **raw.get("kubernetes", {}),
        "kubeconfig": str(kubeconfig),
        "context": "admin",
        "deployer_context": "deployer",
    }
    if lb_address:
        # The lab's load balancer speaks plain HTTP on loopback; the seed's hosts resolve to it.
        for key in ("prod_url", "staging_url"):
            raw["health"][key] = raw["health"][key].replace("https://", "http://", 1)
        raw["health"]["resolve"] = {h: lb_address for h in ("docfast.dev", "staging.docfast.dev")}
    if dns_port:
        raw["health"]["dns_servers"] = [f"127.0.0.1:{dns_port}"]
    # The node aliases and the Storage Box resolve through the lab's own OpenSSH client config.
    raw["ssh"] = {**raw.get("ssh", {}), "config": str(lab_dir / "ssh" / "config")}
    account = raw["backups"]["storage_box"].split("@", 1)[0]
    raw["backups"]["storage_box"] = f"{account}@storagebox"
    raw["backups"].pop("passphrase_env", None)
    raw["backups"]["passcommand"] = f"cat {lab_dir / 'secrets' / 'borg-passphrase'}"
    # The lab's PostgreSQL listens on loopback without TLS (CNPG's would demand it).
    raw["database"]["sslmode"] = "disable"
    from lab.manifests import write as write_manifests

    raw["provision"] = {
        **raw.get("provision", {}),
        "ssh_public_key_file": str(lab_dir / "ssh" / "id_ed25519.pub"),
        "manifests": [str(d) for d in write_manifests(lab_dir, Config.model_validate(raw))],
    }
    if notify:
        # The watcher sends to the lab's own receivers (lab/notify.py), fast: the lab's clock runs faster.
        raw["watch"] = {**raw.get("watch", {}), "notify": notify}
    raw["lab"] = {"dir": str(lab_dir)}
    out = lab_dir / "console.toml"
    header = "# Written by `opsconsole lab up`: the seed's cluster, pointed at the lab on loopback.\n"
    out.write_text(header + tomli_w.dumps(raw))
    return out


async def serve(
    lab_dir: Path,
    config_path: Path,
    config: Config,
    fast: bool,
    scenario: str,
    scale: tuple[int, int, float] | None = None,
    speed: float | None = None,
    k3s_args: dict[str, list[str]] | None = None,
) -> None:
    speed = speed or (FAST_SPEED if fast else 1.0)
    token = secrets.token_hex(32)  # 64 characters, like a real Hetzner project token
    readonly = secrets.token_hex(32)
    control_token = secrets.token_hex(16)
    token_file = write_secret(lab_dir, "hcloud-token", token)
    write_secret(lab_dir, "hcloud-token-readonly", readonly)
    write_secret(lab_dir, "control-token", control_token)
    (lab_dir / "schema-violations.jsonl").unlink(missing_ok=True)

    project = HetznerProject(speed=speed)
    seed_hetzner(project, config, _ssh_keypair(lab_dir), scenario)
    api = HetznerApi(project, token, readonly, violations_log=lab_dir / "schema-violations.jsonl")
    kube = build_kube(project, config, speed, scenario, k3s_args or {})
    from lab.forge import Forge
    from lab.kube.seed import PROD_TAG, STAGING_TAG

    forge = Forge(lab_dir, kube.cluster.images, config.namespaces, speed)
    forge.seed(STAGING_TAG, PROD_TAG)  # before any pod starts: the kubelets report the builds' digests
    churn = None
    if scale:
        from lab.scale import churn as churn_loop
        from lab.scale import populate

        kube.cluster.virtual_nodes.update(populate(kube.store, kube.cluster, scale[0], scale[1]))
        # The twin's collector as the dashboard's (console/gc_policy.py), so full collections of 10,000 pods
        # do not pause its API server.  A precaution, not measured on its own: the watch delay measured at
        # scale was the controllers' filtering (Cluster.pods), and removing that is what fixed it.
        import gc

        from console.gc_policy import FreezeSurvivors

        gc.freeze()
        FreezeSurvivors(asyncio.get_running_loop()).install()
        churn = asyncio.ensure_future(churn_loop(kube.store, kube.cluster, scale[2]))
    await kube.dataplane.start()
    from lab.cnpg import CnpgTwin

    cnpg = CnpgTwin(kube.store, kube.registry, kube.cluster, kube.dataplane, config, lab_dir, speed)
    kube.api.execs.targets.append(cnpg.exec_env)
    kube.metrics.process_of.append(cnpg.pod_processes)
    t0 = time.monotonic()
    await cnpg.bootstrap(empty=scenario == "empty")
    log.info("database bootstrapped in %.2f s", time.monotonic() - t0)
    from lab.certmanager import CertManagerTwin

    certs = CertManagerTwin(kube.store, kube.registry, config, speed)
    certs.start()
    from lab.suc import SucTwin

    SucTwin(kube, config, speed).start()
    kube.cluster.start()
    project.start_monitors()

    runners: list[web.AppRunner] = []

    async def listen(app: web.Application, ssl_context: Any = None) -> int:
        # shutdown_timeout: a twin going down does not wait for open watches and keep-alives to end.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, 0, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        runners.append(runner)
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    from lab.nodes import NodeServices

    nodes = NodeServices(lab_dir, config, kube, cnpg, "", control_token, lab_dir / "kubeconfig")
    kube.cluster.runtime.targets.append(nodes.backup_job)
    hetzner_port = await listen(api.app)
    from lab.dns import LabDns

    lab_dns = LabDns(config.dns)
    control_port = await listen(control_app(control_token, api, kube, cnpg, nodes, lab_dns, forge))
    nodes.env["LAB_CONTROL_URL"] = f"http://{LOOPBACK}:{control_port}"
    t0 = time.monotonic()
    ssh_ports = await nodes.start()
    log.info("ssh, snapshots and storage box set up in %.2f s", time.monotonic() - t0)
    hetzner_url = f"http://{LOOPBACK}:{hetzner_port}/v1"
    kube_port = await listen(kube.api.app, server_ssl(kube))
    kube_url = f"https://{LOOPBACK}:{kube_port}"
    kube.api.server_address = f"{LOOPBACK}:{kube_port}"
    kubeconfig = lab_dir / "kubeconfig"
    write_kubeconfig(kube, kubeconfig, kube_url, config.namespaces.prod)
    lb_port = await kube.dataplane.start_lb(
        config.hetzner.load_balancer.id, config.hetzner.load_balancer.name
    )
    dns_port = await lab_dns.start()
    from lab.notify import NotificationSinks

    sinks = NotificationSinks(lab_dir)
    hook_port, smtp_port = await sinks.start()

    env_file = lab_dir / "hcloud.env"
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"export HCLOUD_ENDPOINT={hetzner_url}\nexport HCLOUD_TOKEN={token}\n")
    console_toml = _console_config(
        config_path,
        lab_dir,
        hetzner_url,
        token_file,
        kubeconfig,
        f"{LOOPBACK}:{lb_port}" if lb_port else None,
        dns_port,
        sinks.urls(hook_port, smtp_port),
    )

    lbc = config.hetzner.load_balancer
    state = LabState(
        dir=str(lab_dir),
        pid=os.getpid(),
        started=time.time(),
        fast=fast,
        scenario=scenario,
        hetzner_url=hetzner_url,
        control_url=f"http://{LOOPBACK}:{control_port}",
        kubernetes_url=kube_url,
        files={
            "hcloud_env": str(env_file),
            "console_config": str(console_toml),
            "kubeconfig": str(kubeconfig),
            "ca": str(lab_dir / "ca.pem"),
            "ssh_key": str(lab_dir / "ssh" / "id_ed25519"),
            "ssh_config": str(lab_dir / "ssh" / "config"),
            "borg_env": str(lab_dir / "borg.env"),
            "log": str(lab_dir / "lab.log"),
            "notifications": str(sinks.path),
        },
        load_balancer={
            "name": lbc.name,
            "public_ipv4": lbc.public_ipv4,
            "address": f"{LOOPBACK}:{lb_port}" if lb_port else None,
            "ports": [80],
        },
        ssh=ssh_ports,
    )
    write_state(state)
    log.info("lab up: hetzner %s control %s (speed %.2f)", hetzner_url, state.control_url, speed)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("lab stopping")
        state_file(lab_dir).unlink(missing_ok=True)
        if churn is not None:
            churn.cancel()
        took: dict[str, float] = {}
        parts: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("hetzner", project.close),
            ("nodes", nodes.close),
            ("forge", forge.close),
            ("notification sinks", sinks.close),
            ("cert-manager", certs.close),
            ("kubernetes", kube.cluster.close),
            *([("cnpg", cnpg.close)] if cnpg is not None else []),
            ("data plane", kube.dataplane.close),
            *((f"listener {i}", r.cleanup) for i, r in enumerate(runners)),
        ]
        lab_dns.close()
        for name, close in parts:
            # Bounded: a part that does not close in time is named and left behind (the process exits
            # and `lab down` kills its group), so one stuck part cannot hold the rest open.
            t = time.monotonic()
            try:
                await asyncio.wait_for(close(), CLOSE_TIMEOUT_S)
            except TimeoutError:
                log.warning("lab stopping: %s did not close within %.0f s", name, CLOSE_TIMEOUT_S)
            took[name] = time.monotonic() - t
        slow = ", ".join(f"{n} {s:.1f} s" for n, s in sorted(took.items(), key=lambda kv: -kv[1])[:3])
        log.info("lab stopped in %.1f s (slowest: %s)", sum(took.values()), slow)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab.daemon")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--speed", type=float, default=None)
    parser.add_argument("--scenario", default="seed")
    parser.add_argument("--scale", default=None)
    for flag in COMPONENT_FLAGS:  # the server's K3s flags (lab/kube/timing.py)
        parser.add_argument(f"--{flag}", action="append", default=[])
    args = parser.parse_args(argv)
    lab_dir: Path = args.dir.resolve()
    lab_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    lock = (lab_dir / "lab.lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another lab already runs in {lab_dir}", file=sys.stderr)
        return 3
    config = load_config(args.config)
    with contextlib.suppress(KeyboardInterrupt):
        from lab.scale import parse_scale

        scale = parse_scale(args.scale) if args.scale else None
        k3s_args = {flag: getattr(args, flag.replace("-", "_")) for flag in COMPONENT_FLAGS}
        asyncio.run(
            serve(
                lab_dir, args.config.resolve(), config, args.fast, args.scenario, scale, args.speed, k3s_args
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
