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

from console.config import Config, ConfigError, default_config_path, load_config


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
    return p


def _lab_config_path() -> Path:
    from console.paths import default_lab_dir
    from lab.cli import LabError
    from lab.state import read_state

    state = read_state(default_lab_dir().resolve())
    if state is None:
        raise LabError("no lab is running; start it with `opsconsole lab up`")
    return Path(state.files["console_config"])


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lab":
        from lab.cli import main as lab_main

        return lab_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        path = _lab_config_path() if args.lab else (args.config or default_config_path())
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
    print(summary(config))
    print("The dashboard is not built yet (see the issues); `opsconsole lab status` shows the lab.")
    return ExitCode.OK
