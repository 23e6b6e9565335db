"""Entry point: `opsconsole` (also `python -m console`).

* ``opsconsole lab …`` — the twin (imported lazily: the product itself never imports ``lab``).
* ``opsconsole [--config PATH] [--lab] --check-config`` — validate a config and summarise it.

Exit codes (DESIGN.md): 0 ok, 1 failed, 2 usage or config error, 3 refused, 4 rolled back, 130 interrupted.
Bad input gets one sentence on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from actions.registry import ACTIONS, refused
from console.config_file import ConfigError, default_config_path, read_head
from console.gc_policy import quiet_start, restore, settle

if TYPE_CHECKING:
    from console.config import Config


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    REFUSED = 3
    ROLLED_BACK = 4
    INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="opsconsole",
        description="Operations console for the K3s cluster on Hetzner Cloud "
        "(`opsconsole lab --help` for the lab).",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="cluster config (default: $OPSCONSOLE_CONFIG, XDG config, ./config.toml)",
    )
    p.add_argument("--lab", action="store_true", help="use the running lab (its console.toml)")
    p.add_argument("--check-config", action="store_true", help="validate the config, print a summary, exit")
    p.add_argument(
        "--action",
        choices=sorted(ACTIONS),
        help="run one action headless (no TUI) and exit: "
        + "; ".join(f"{a.name}: {a.description}" for a in ACTIONS.values()),
    )
    p.add_argument("--json", action="store_true", help="with --action: machine-readable output on stdout")
    p.add_argument("--read-only", action="store_true", help="refuse every mutating action")
    drill = p.add_argument_group("drills (--action drill)")
    drill.add_argument(
        "--scenario",
        choices=["node-down", "node-drain", "db-switchover", "db-primary-kill", "pooler-kill"],
        help="what to break",
    )
    drill.add_argument("--target", help="node, instance or pooler pod (default: the scenario's usual one)")
    drill.add_argument(
        "--mode", choices=["hard", "graceful"], default="hard", help="node-down: power off or shut down"
    )
    drill.add_argument("--force", action="store_true", help="run past failed non-critical checks (logged)")
    backup = p.add_argument_group("backups (--action backup|prune|backup-check|verify-restore|restore…)")
    backup.add_argument(
        "--what", choices=["db", "cluster", "all"], default="db", help="backup: what to back up"
    )
    backup.add_argument("--verify-data", action="store_true", help="backup-check: read every chunk")
    backup.add_argument(
        "--lock-wait",
        type=int,
        default=None,
        help="wait up to N s for a locked Borg repository (default: fail)",
    )
    backup.add_argument("--db", default=None, help="restore: the database whose dump to restore")
    backup.add_argument(
        "--archive", default="latest", help="restore, restore-cluster: archive name or latest"
    )
    backup.add_argument("--into", default=None, help="restore: target database (default: staging)")
    backup.add_argument(
        "--i-mean-production", action="store_true", help="restore: allow the production database as target"
    )
    prov = p.add_argument_group("provisioning (--action provision)")
    prov.add_argument("--plan", action="store_true", help="provision: show the plan only (changes nothing)")
    prov.add_argument(
        "--allow-delete", action="store_true", help="provision: also delete labelled resources not in config"
    )
    rel = p.add_argument_group("releases (--action promote|rollback)")
    rel.add_argument(
        "--tag",
        default=None,
        help="promote with release.route = 'tag': the v* tag to push (default: next patch)",
    )
    p.add_argument("--dir", type=Path, default=None, help="ha-export: where to write the manifests")
    p.add_argument("--yes", action="store_true", help="with a mutating --action: confirm it (scripts)")
    p.add_argument("--dry-run", action="store_true", help="with --action: preflight and plan only")
    return p


def _lab_config_path(start: bool) -> tuple[Path, bool]:
    """The running lab's console config; with ``start`` a lab is started (and reported as ours to stop)."""
    from console.paths import default_lab_dir
    from lab.cli import LabError, repo_config, up  # lazy: only the lab entry points import lab/
    from lab.state import read_state

    lab_dir = default_lab_dir().resolve()
    state = read_state(lab_dir)
    if state is not None:
        return Path(state.files["console_config"]), False
    if not start:
        raise LabError("no lab is running; start it with `opsconsole lab up`")
    print("starting the lab for this command…", file=sys.stderr)
    state, _ = up(lab_dir, repo_config(), fast=True, scenario="seed")
    # The Storage Box seeds its archive history in the background after `lab up` returns; a command on a
    # lab started for it sees the whole lab (a backup action would otherwise find no repository).
    import time

    from lab.cli import control

    deadline = time.monotonic() + 120
    while not control(state, "GET", "/storagebox").get("ready") and time.monotonic() < deadline:
        time.sleep(0.2)
    return Path(state.files["console_config"]), True


def _stop_lab() -> None:
    from console.paths import default_lab_dir
    from lab.cli import down

    down(default_lab_dir().resolve())


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else ""


def run_action(name: str, config: Config, args: argparse.Namespace) -> int:
    import asyncio

    from console.headless import EventPrinter, print_status

    as_json = bool(args.json)
    info = ACTIONS[name]
    if info.mutating and args.read_only:
        print(f"opsconsole: {refused(info, True)}", file=sys.stderr)
        return ExitCode.REFUSED
    if name == "status":
        from actions.status import collect

        snap = asyncio.run(collect(config))
        print_status(snap, as_json)
        return int(ExitCode.FAILED if snap.critical else ExitCode.OK)
    if name == "drill":
        from actions.drill import DrillRequest, run_headless

        if not args.scenario:
            print("opsconsole: --action drill needs --scenario (see --help)", file=sys.stderr)
            return ExitCode.USAGE
        request = DrillRequest(args.scenario, args.target, args.mode, bool(args.force))
        return asyncio.run(
            run_headless(config, request, EventPrinter(as_json), bool(args.yes), bool(args.dry_run))
        )
    if name == "recover":
        from actions.recover import recover

        return asyncio.run(recover(config, EventPrinter(as_json), bool(args.yes)))
    if name in ("promote", "rollback"):
        from actions import promote
        from console.runner import Refused

        printer, yes, dry = EventPrinter(as_json), bool(args.yes), bool(args.dry_run)
        try:
            if name == "promote":
                return int(asyncio.run(promote.run_promote(config, printer, yes, dry, args.tag)))
            return int(asyncio.run(promote.run_rollback(config, printer, yes, dry)))
        except Refused as exc:
            print(f"opsconsole: {name} refused: {exc}", file=sys.stderr)
            return int(ExitCode.REFUSED)
    if name == "provision":
        from actions import provision

        if args.plan or args.dry_run:
            return int(asyncio.run(provision.run_plan(config, EventPrinter(as_json))))
        if not args.yes:
            print("opsconsole: provision creates servers: add --yes (or --plan to see what)", file=sys.stderr)
            return int(ExitCode.USAGE)
        return int(
            asyncio.run(provision.run_provision(config, EventPrinter(as_json), bool(args.allow_delete)))
        )
    if name == "replace-node":
        from actions.replace_node import run_replace_node

        return int(asyncio.run(run_replace_node(config, EventPrinter(as_json), args.target, bool(args.yes))))
    if name in ("ha", "ha-export"):
        return run_ha_action(name, config, args, EventPrinter(as_json))
    return run_backup_action(name, config, args, EventPrinter(as_json))


def run_ha_action(name: str, config: Config, args: argparse.Namespace, emit: Any) -> int:
    import asyncio

    from actions import ha
    from console.clients.kube import KubeError
    from console.runner import Refused

    try:
        if name == "ha-export":
            if args.dir is None:
                print("opsconsole: --action ha-export needs --dir DIR", file=sys.stderr)
                return int(ExitCode.USAGE)
            return int(asyncio.run(ha.run_export(config, emit, args.dir)))
        if args.dry_run:
            return int(asyncio.run(ha.run_dry_run(config, emit)))
        if not args.yes:
            print(
                "opsconsole: ha changes the cluster: add --yes (or --dry-run to see the drift)",
                file=sys.stderr,
            )
            return int(ExitCode.USAGE)
        return int(asyncio.run(ha.run_apply(config, emit)))
    except Refused as exc:
        print(f"opsconsole: {name} refused: {exc}", file=sys.stderr)
        return int(ExitCode.REFUSED)
    except KubeError as exc:
        code = ExitCode.REFUSED if exc.status in (401, 403) else ExitCode.FAILED
        print(f"opsconsole: {name}: the Kubernetes API refused: {exc.message}", file=sys.stderr)
        return int(code)


def run_backup_action(name: str, config: Config, args: argparse.Namespace, emit: Any) -> int:
    """The backup family; a refusal (lock, unfinished action) is exit 3, a Borg or pg error exit 1."""
    import asyncio

    from actions import backup, restore
    from console.clients.borg import BorgError
    from console.clients.pgtools import PgToolError
    from console.runner import Refused

    if args.lock_wait is not None:
        config = config.model_copy(
            update={"backups": config.backups.model_copy(update={"lock_wait_s": max(0, args.lock_wait)})}
        )
    calls = {
        "backup": lambda: backup.run_backup(config, emit, args.what),
        "prune": lambda: backup.run_prune(config, emit, bool(args.dry_run)),
        "backup-check": lambda: backup.run_check(config, emit, bool(args.verify_data)),
        "archives": lambda: backup.run_archives(config, emit),
        "verify-restore": lambda: restore.run_verify_restore(config, emit),
        "restore": lambda: restore.run_restore_db(
            config,
            emit,
            args.db or config.database.databases[0],
            args.archive,
            args.into,
            bool(args.yes),
            bool(args.i_mean_production),
        ),
        "restore-cluster": lambda: restore.run_restore_cluster(config, emit, args.archive, bool(args.yes)),
    }
    if name not in calls:
        return int(ExitCode.USAGE)
    try:
        return int(asyncio.run(calls[name]()))
    except Refused as exc:
        print(f"opsconsole: {name} refused: {exc}", file=sys.stderr)
        return int(ExitCode.REFUSED)
    except (BorgError, PgToolError) as exc:
        print(f"opsconsole: {name} failed: {exc}", file=sys.stderr)
        return int(ExitCode.FAILED)


def summary(config: Config) -> str:
    hz = config.hetzner
    lines = [
        f"cluster {config.cluster.name} ({config.cluster.k3s_version}) in {hz.location}, "
        f"Hetzner API {hz.endpoint}",
        "nodes: " + ", ".join(f"{n.name} ({n.role}, #{n.hetzner_id})" for n in config.nodes),
        f"load balancer {hz.load_balancer.name} -> {', '.join(hz.load_balancer.targets)} "
        f"on {', '.join(map(str, hz.load_balancer.ports))}",
        f"database {config.database.namespace}/{config.database.cluster} "
        f"({config.database.instances} instances), pooler {config.database.pooler}",
        "backups: " + ", ".join(f"{r.name} every {r.max_age_hours:g} h" for r in config.backups.repositories),
    ]
    if config.lab:
        lines.insert(0, f"LAB (twin in {config.lab.dir})")
    return "\n".join(lines)


def run() -> NoReturn:
    """The ``opsconsole`` script (and ``python -m console``): :func:`main`, then exit without the
    interpreter's teardown.

    Tearing down the modules a headless run loads (pydantic, the Kubernetes and SSH clients, psycopg,
    aiohttp) takes ~0.4 s on this machine — a fifth of ``--action status``'s wall time — and does
    nothing a finished command needs: every file is closed by then, the journal committed.  The
    ``atexit`` handlers still run (the Kubernetes client removes its temporary certificate files there,
    logging flushes), then the standard streams are flushed and the process ends with main's code."""
    import atexit
    import os

    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    os._exit(int(code))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lab":
        from lab.cli import main as lab_main

        return lab_main(argv[1:])
    quiet_start()  # no garbage collection during start-up's imports (console/gc_policy.py)
    try:
        return _main(argv)
    finally:
        restore()


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.check_config or (args.action and args.action != "status"):
        settle()  # a long-running action: start-up is over once the arguments are read
    started_lab = False
    try:
        if args.lab:
            path, started_lab = _lab_config_path(start=not args.check_config)
        else:
            path = args.config or default_config_path()
        if not args.action and not args.check_config:
            return _dashboard(path, bool(args.read_only), started_lab)
        from console.config import load_config  # pydantic: ~0.25 s, paid where a config is validated

        config = load_config(path)
    except ConfigError as exc:
        print(f"opsconsole: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except Exception as exc:  # LabError from the lazy import; kept generic so console/ never names lab/
        if type(exc).__name__ == "LabError":
            print(f"opsconsole: {exc}", file=sys.stderr)
            return ExitCode.FAILED
        raise
    if args.check_config:
        print(f"{path}: ok")
        print(summary(config))
        return ExitCode.OK
    try:
        return run_action(str(args.action), config, args)
    except ConfigError as exc:
        print(f"opsconsole: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except Exception as exc:  # one sentence, never a traceback
        print(
            f"opsconsole: {args.action} failed: {type(exc).__name__}: {_first_line(exc)}",
            file=sys.stderr,
        )
        return ExitCode.FAILED
    finally:
        if started_lab:
            _stop_lab()


def _dashboard(path: Path, read_only: bool, started_lab: bool) -> int:
    """The TUI: painted from the config's head (console/config_file.py), validated right after the first
    frame; a config that fails validation ends it with the one sentence and exit 2."""
    try:
        head = read_head(path)
        from screens.app import Dashboard  # lazy: console/ never imports Textual at module level

        app = Dashboard(None, read_only=read_only, head=head)
        app.run()
        if app.config_error:
            print(f"opsconsole: {app.config_error}", file=sys.stderr)
            return ExitCode.USAGE
    finally:
        if started_lab:
            _stop_lab()
    return ExitCode.OK
