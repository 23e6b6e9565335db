"""``opsconsole watch``: the long-running headless watcher (``watch/service.py``), and the files that make
it run elsewhere (``--print-systemd-unit``).

Logs go to stderr, one line per event (the journal of systemd or of the pod keeps them); SIGTERM and
SIGINT stop it cleanly with exit 0 (it gives its Lease up); a config that does not validate or an address
it cannot listen on is one sentence and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from console.config_file import default_config_path
from console.errors import ExitCode, OpsError, UsageError

if TYPE_CHECKING:
    from console.config import Config


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="opsconsole watch",
        description="Watch the cluster headless: findings become alerts (notifications through apprise), "
        "/metrics and /healthz for Prometheus.",
    )
    p.add_argument("--config", type=Path, default=None, help="cluster config (default as for opsconsole)")
    p.add_argument("--lab", action="store_true", help="watch the running lab (its console.toml)")
    p.add_argument(
        "--listen",
        default=None,
        metavar="HOST:PORT",
        help="/metrics and /healthz (default: watch.listen, 127.0.0.1:9469)",
    )
    p.add_argument(
        "--export-manifests",
        type=Path,
        metavar="DIR",
        help="write the manifests that run this watcher in the cluster (kubectl apply -f DIR), exit",
    )
    p.add_argument(
        "--image",
        default=None,
        help="with --export-manifests: the console's image (default: opsconsole:VERSION)",
    )
    p.add_argument(
        "--print-systemd-unit", action="store_true", help="print a systemd unit running this watcher, exit"
    )
    return p


def _listen(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"--listen {text!r} is not HOST:PORT")
    return host, int(port)


def systemd_unit(config_path: Path, listen: str | None) -> str:
    """A unit for ``/etc/systemd/system/opsconsole-watch.service``: restarted on failure, stopped with
    SIGTERM (the watcher gives its Lease up), its state in systemd's StateDirectory."""
    exe = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "opsconsole" else None
    command = [str(exe) if exe else "opsconsole", "watch", "--config", str(config_path.resolve())]
    if listen:
        command += ["--listen", listen]
    return "\n".join(
        [
            "[Unit]",
            "Description=opsconsole watch: alerting for the K3s cluster",
            "Wants=network-online.target",
            "After=network-online.target",
            "",
            "[Service]",
            "Type=exec",
            f"ExecStart={shlex.join(command)}",
            "Restart=on-failure",
            "RestartSec=10",
            "KillSignal=SIGTERM",
            "TimeoutStopSec=30",
            "StateDirectory=opsconsole",
            "Environment=XDG_STATE_HOME=/var/lib",
            "# Secrets (HCLOUD_TOKEN, notification URLs) come from a file only root reads:",
            "EnvironmentFile=-/etc/opsconsole/watch.env",
            "DynamicUser=no",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=read-only",
            "PrivateTmp=yes",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        if args.lab:
            from opsconsole.cli import _lab_config_path

            path, _ = _lab_config_path(start=False)
        else:
            path = args.config or default_config_path()
        if args.print_systemd_unit:
            sys.stdout.write(systemd_unit(path, args.listen))
            return ExitCode.OK
        from console.config import load_config

        config = load_config(path)
        if args.export_manifests:
            from importlib.metadata import version

            from watch.export import export

            image = args.image or f"opsconsole:{version('opsconsole')}"
            for written in export(config, args.export_manifests, image):
                print(written)
            return ExitCode.OK
        return asyncio.run(_watch(config, path, _listen(args.listen)))
    except OpsError as exc:
        print(f"opsconsole watch: {exc.sentence()}", file=sys.stderr)
        return exc.exit_code


async def _watch(config: Config, path: Path, listen: tuple[str, int] | None) -> int:
    from console.paths import state_home
    from watch.service import Watcher

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    for noisy in ("aiohttp.access", "asyncssh", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    watcher = Watcher(config, path, state_home(), listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await watcher.run(stop)
    return ExitCode.OK
