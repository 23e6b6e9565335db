"""Entry point: ``opsconsole`` (also ``python -m opsconsole``) — the one place that may import everything.

* ``opsconsole [--config PATH | --lab] [--read-only]`` — the dashboard (TUI).
* ``opsconsole … --action NAME [flags] [--json] [--yes | --dry-run]`` — one action headless, through the
  same runner the TUI uses (``console/runner.py``); the flags come from the actions' own ``Params``.
* ``opsconsole … --check-config`` — validate a config and summarise it.
* ``opsconsole watch …`` — the headless watcher: alerts, ``/metrics`` (``opsconsole/watch_cli.py``).
* ``opsconsole lab …`` — the twin (imported lazily: the core and the actions never import ``lab``).

Bad input gets one sentence on stderr and the exit code of ``console/errors.py``, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from console.action import Action, param_specs
from console.config_file import default_config_path, read_head
from console.errors import EXIT_MEANINGS, ExitCode, OpsError, UsageError
from console.gc_policy import quiet_start, restore, settle

if TYPE_CHECKING:
    from console.config import Config
    from console.events import Finished


def _actions() -> Mapping[str, type[Action[Any]]]:
    """The registry (``actions/registry.py``): each action's module is imported when it is asked for."""
    from actions.registry import ACTIONS

    return ACTIONS


def _flag_owners(names: Iterable[str]) -> dict[str, list[tuple[str, Any, Any]]]:
    """``--flag`` -> [(action name, dataclass field, ParamSpec)] over the named actions' parameters."""
    owners: dict[str, list[tuple[str, Any, Any]]] = {}
    for name in names:
        for f, spec in param_specs(_actions()[name].Params):
            owners.setdefault(spec.flag, []).append((name, f, spec))
    return owners


def _field_type(cls: type[Any], name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def parser(names: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The command line, knowing the flags of the actions ``names`` (None: every action, with ``--help``).

    ``opsconsole`` parses twice: first with the global flags alone (the dashboard needs no action), then
    with the named action's flags — so ``--action status`` imports only the status action — and with
    every action's only for ``--help`` or a flag the named action does not know."""
    from actions.registry import ENTRIES

    every = names is None
    wanted = list(ENTRIES) if names is None else list(names)
    epilog = "exit codes:\n" + "\n".join(f"  {int(c):>3}  {c.meaning}" for c in ExitCode)
    p = argparse.ArgumentParser(
        prog="opsconsole",
        description="Operations console for the K3s cluster on Hetzner Cloud "
        "(`opsconsole lab --help` for the lab).",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=every,
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="cluster config (default: $OPSCONSOLE_CONFIG, XDG config, ./config.toml)",
    )
    p.add_argument("--lab", action="store_true", help="use the running lab (its console.toml)")
    p.add_argument("--check-config", action="store_true", help="validate the config, print a summary, exit")
    described = "; ".join(f"{n}: {_actions()[n].description}" for n in ENTRIES) if every else ""
    p.add_argument(
        "--action", choices=list(ENTRIES), help="run one action headless (no TUI) and exit: " + described
    )
    p.add_argument("--json", action="store_true", help="with --action: machine-readable output on stdout")
    p.add_argument("--read-only", action="store_true", help="refuse every mutating action")
    p.add_argument("--yes", action="store_true", help="with a mutating --action: confirm it (scripts)")
    p.add_argument("--dry-run", action="store_true", help="with --action: preflight and plan only")
    _action_flags(p, wanted)
    return p


def _action_flags(p: argparse.ArgumentParser, names: list[str]) -> None:
    """One flag per distinct parameter of the actions, in a group named by the actions that take it."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for flag, owners in _flag_owners(names).items():
        title = "--action " + "|".join(dict.fromkeys(n for n, _, _ in owners))
        group = groups.setdefault(title, p.add_argument_group(title))
        name, f, spec = owners[0]
        kind = _field_type(_actions()[name].Params, f.name)
        texts = {s.help for _, _, s in owners}
        helps = spec.help if len(texts) == 1 else "; ".join(f"{n}: {s.help}" for n, _, s in owners)
        opts: dict[str, Any] = {"help": helps, "default": argparse.SUPPRESS, "dest": _dest(flag)}
        if kind is bool:
            opts["action"] = "store_true"
        else:
            opts["type"] = int if kind in (int, int | None) else Path if kind in (Path, Path | None) else str
            choices = spec.choices if not callable(spec.choices) else None
            if choices and all(s.choices == spec.choices for _, _, s in owners):
                opts["choices"] = list(choices)
            else:
                opts["metavar"] = f.name.upper()
        group.add_argument(flag, **opts)


def parse(argv: list[str]) -> argparse.Namespace:
    """The arguments, importing no more of the registry than they name (see :func:`parser`)."""
    args, rest = parser([]).parse_known_args(argv)
    if {"-h", "--help"} & set(argv):
        return parser().parse_args(argv)  # prints the help and exits
    if args.action:
        args, rest = parser([args.action]).parse_known_args(argv)
    return parser().parse_args(argv) if rest else args


def build_params(cls: type[Action[Any]], args: argparse.Namespace) -> Any:
    """The action's ``Params`` from the flags given (its dataclass defaults for the rest); a flag meant for
    other actions is named on stderr and ignored."""
    mine = {_dest(spec.flag): f for f, spec in param_specs(cls.Params)}
    values = {}
    for key, value in vars(args).items():
        if key in mine:
            values[mine[key].name] = value
        elif key.startswith("param_"):
            flag = next(flag for flag in _flag_owners(_actions()) if _dest(flag) == key)
            print(f"opsconsole: {flag} does not apply to --action {cls.name} (ignored)", file=sys.stderr)
    return cls.Params(**values)


def _dest(flag: str) -> str:
    return "param_" + flag.removeprefix("--").replace("-", "_")


def _lab_config_path(start: bool) -> tuple[Path, bool]:
    """The running lab's console config; with ``start`` a lab is started (and reported as ours to stop)."""
    from console.paths import default_lab_dir
    from lab.cli import LabError, repo_config, up, wait_ready
    from lab.state import read_state

    lab_dir = default_lab_dir().resolve()
    state = read_state(lab_dir)
    if state is not None:
        return Path(state.files["console_config"]), False
    if not start:
        raise LabError("no lab is running; start it with `opsconsole lab up`")
    print("starting the lab for this command…", file=sys.stderr)
    state, _ = up(lab_dir, repo_config(), fast=True, scenario="seed")
    wait_ready(state)  # the whole lab, the Storage Box's history included (a backup wants its repository)
    return Path(state.files["console_config"]), True


def _stop_lab() -> None:
    from console.paths import default_lab_dir
    from lab.cli import down

    down(default_lab_dir().resolve())


def run_action(cls: type[Action[Any]], config: Config, args: argparse.Namespace) -> int:
    """One action headless: the runner with ``--yes`` as its confirmation, Ctrl-C and SIGTERM as an
    interrupt (rolled back, exit 130), events printed as they come."""
    import asyncio
    import signal

    from console.headless import EventPrinter
    from console.runner import Runner, yes

    action = cls(config, build_params(cls, args))
    printer = EventPrinter(bool(args.json), report_only=cls.output == "report")

    async def go() -> Finished:
        runner = Runner(action, printer, read_only=bool(args.read_only))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runner.interrupt)
        return await runner.run(yes(bool(args.yes)), dry_run=bool(args.dry_run) or action.dry_run_requested())

    return int(asyncio.run(go()).exit_code)


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
    """The ``opsconsole`` script (and ``python -m opsconsole``): :func:`main`, then exit without the
    interpreter's teardown.

    Tearing down the modules a headless run loads (pydantic, the Kubernetes and SSH clients, psycopg,
    aiohttp) does nothing a finished command needs — every file is closed by then, the journal committed —
    and costs a noticeable part of ``--action status``'s wall time (bench/status.py).  The ``atexit``
    handlers still run (the Kubernetes client removes its temporary certificate files there, logging
    flushes), then the standard streams are flushed and the process ends with main's code."""
    import atexit
    import os

    try:
        code = main()
    except BrokenPipeError:  # the reader went away (`… | head`): nothing left to say, and no traceback
        code = ExitCode.OK
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    os._exit(int(code))


def quiet_library_warnings() -> None:
    """Warnings a library raises about itself are not the operator's to read: asyncssh imports the DSA
    key support recent cryptography releases deprecate, and every command would open with ten lines of it on
    stderr, where scripts expect one sentence at most."""
    import warnings

    warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh(\.|$)")


def main(argv: list[str] | None = None) -> int:
    quiet_library_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lab":
        from lab.cli import main as lab_main

        return lab_main(argv[1:])
    if argv and argv[0] == "watch":
        from opsconsole.watch_cli import main as watch_main

        return watch_main(argv[1:])
    quiet_start()  # no garbage collection during start-up's imports (console/gc_policy.py)
    try:
        return _main(argv)
    finally:
        restore()


def _main(argv: list[str]) -> int:
    args = parse(argv)
    if args.check_config or (args.action and args.action != "status"):
        settle()  # a long-running action: start-up is over once the arguments are read
    started_lab = False
    try:
        if args.lab:
            path, started_lab = _lab_config_path(start=not args.check_config)
        else:
            path = args.config or default_config_path()
        if not args.action and not args.check_config:
            return _dashboard(path, bool(args.read_only))
        from console.config import load_config  # pydantic: paid where a config is validated

        config = load_config(path)
        if args.check_config:
            print(f"{path}: ok")
            print(summary(config))
            return ExitCode.OK
        return run_action(_actions()[str(args.action)], config, args)
    except OpsError as exc:  # a config, usage or lab problem: one sentence
        print(f"opsconsole: {exc.sentence()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    finally:
        if started_lab:
            _stop_lab()


def _dashboard(path: Path, read_only: bool) -> int:
    """The TUI: painted from the config's head (console/config_file.py), validated right after the first
    frame; a config that fails validation ends it with the one sentence and exit 2."""
    head = read_head(path)
    from screens.app import Dashboard  # lazy: the headless modes never import Textual

    app = Dashboard(None, read_only=read_only, head=head)
    app.run()
    if app.config_error:
        print(f"opsconsole: {app.config_error}", file=sys.stderr)
        return ExitCode.USAGE
    return ExitCode.OK


__all__ = ["EXIT_MEANINGS", "UsageError", "main", "parser", "run"]
