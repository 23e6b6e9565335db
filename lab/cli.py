"""`opsconsole lab up|down|status|fault` — start, stop, inspect and disturb the lab.

`up` starts ``python -m lab.daemon`` detached and returns once every listener answers.  Run twice on one
directory it reuses the running lab (never a second one).  `down` stops the daemon and its process group
and checks that no listening port is left.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from console.config import ConfigError, default_config_path, load_config
from console.errors import OpsError
from console.paths import default_lab_dir
from lab.kube.timing import COMPONENT_FLAGS, Timing
from lab.state import PG_BIN_ENV, LabState, port_open, read_state, state_file

SCENARIOS = ("seed", "empty", "cert-expiring")
UP_TIMEOUT_S = 60.0


class LabError(OpsError):
    """A lab problem phrased for the operator (exit 1)."""


def repo_config() -> Path:
    """The checkout's config.toml (the seed's cluster), used when no other config is given."""
    path = default_config_path()
    return path if path.exists() else Path(__file__).resolve().parent.parent / "config.toml"


def up(
    lab_dir: Path,
    config: Path,
    fast: bool,
    scenario: str,
    timeout: float = UP_TIMEOUT_S,
    scale: str | None = None,
    speed: float | None = None,
    postgres_bin: Path | None = None,
    k3s_args: dict[str, list[str]] | None = None,
) -> tuple[LabState, bool]:
    """Start the lab in ``lab_dir`` (or reuse the one running there); return (state, started_now).
    ``postgres_bin``: the PostgreSQL installation the database runs on (default Debian's 15).
    ``k3s_args``: K3s-style component flags by flag name (``kube-controller-manager-arg`` ->
    ``["node-monitor-grace-period=20s"]``), as the seed's server would be started with them
    (lab/kube/timing.py)."""
    if scenario not in SCENARIOS:
        raise LabError(f"unknown scenario {scenario!r} (choose from: {', '.join(SCENARIOS)})")
    if speed is not None and not 0.01 <= speed <= 1.0:
        raise LabError(f"--speed is a factor from 0.01 to 1 (every lab duration times it), not {speed:g}")
    if scale:
        from lab.scale import parse_scale

        try:
            parse_scale(scale)
        except ValueError as exc:
            raise LabError(str(exc)) from None
    if postgres_bin is not None and not (postgres_bin / "postgres").exists():
        raise LabError(f"--postgres-bin {postgres_bin}: no postgres binary there")
    k3s_args = k3s_args or {}
    try:
        Timing().with_args(*(k3s_args.get(flag, []) for flag in COMPONENT_FLAGS))
    except ValueError as exc:
        raise LabError(f"a K3s component flag is not valid: {exc}") from None
    load_config(config)  # fail here, in the foreground, with the config's own message
    lab_dir = lab_dir.resolve()
    running = read_state(lab_dir)
    if running is not None:
        return running, False
    lab_dir.mkdir(parents=True, exist_ok=True)
    state_file(lab_dir).unlink(missing_ok=True)
    logfile = (lab_dir / "lab.log").open("ab")
    cmd = [
        sys.executable,
        # asyncssh imports the DSA support cryptography deprecates: not news for lab.log (opsconsole/cli.py)
        "-W",
        "ignore:DSA is deprecated",
        "-m",
        "lab.daemon",
        "--dir",
        str(lab_dir),
        "--config",
        str(config.resolve()),
        "--scenario",
        scenario,
        *(["--fast"] if fast else []),
        *(["--speed", str(speed)] if speed else []),
        *(["--scale", scale] if scale else []),
        *[f"--{flag}={value}" for flag in COMPONENT_FLAGS for value in k3s_args.get(flag, [])],
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")) if p
        ),
        **({PG_BIN_ENV: str(postgres_bin.resolve())} if postgres_bin else {}),
    }
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=logfile,
        stderr=logfile,
        start_new_session=True,
        env=env,
        cwd=lab_dir,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            tail = (lab_dir / "lab.log").read_text(errors="replace").strip().splitlines()[-5:]
            if code == 3:
                running = read_state(lab_dir)
                if running is not None:
                    return running, False
            from lab.postgres import cleanup_runtime

            cleanup_runtime(lab_dir)
            raise LabError(f"the lab exited during start-up (code {code}): " + " | ".join(tail))
        state = read_state(lab_dir)
        if (
            state is not None
            and state.pid == proc.pid
            and all(port_open(h, p) for h, p in state.api_listeners())
        ):
            return state, True
        time.sleep(0.05)
    stop_pid(proc.pid)
    from lab.postgres import cleanup_runtime

    cleanup_runtime(lab_dir)
    raise LabError(f"the lab did not answer within {timeout:.0f} s; see {lab_dir / 'lab.log'}")


def stop_pid(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the daemon's process group, wait, then SIGKILL what is left."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            # Reap our own child if we started it in this process (tests do).
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)


def down(lab_dir: Path) -> LabState | None:
    """Stop the lab running in ``lab_dir``; return its last state (None when none was running)."""
    lab_dir = lab_dir.resolve()
    state = read_state(lab_dir)
    if state is None:
        return None
    stop_pid(state.pid)
    from lab.postgres import cleanup_runtime

    cleanup_runtime(lab_dir)
    left = [f"{h}:{p}" for h, p in state.listeners() if port_open(h, p)]
    if left:
        raise LabError(f"the lab stopped but these ports still listen: {', '.join(left)}")
    return state


def control(state: LabState, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call the lab's control API (faults, clock, ground truth)."""
    req = urllib.request.Request(
        state.control_url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Authorization": f"Bearer {state.secret('control-token')}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise LabError(f"lab control {path}: {json.loads(exc.read()).get('error', exc.reason)}") from None


def starting(state: LabState) -> list[str]:
    """What the running lab is still getting ready (empty: everything answers as the seed's cluster)."""
    try:
        box = control(state, "GET", "/storagebox")
    except LabError:
        return ["the control API (not answering)"]
    if box.get("error"):
        raise LabError(f"the Storage Box could not be seeded: {box['error']}")
    return (
        [] if box.get("ready") else ["the Storage Box's archive history (borg create, one per schedule run)"]
    )


def wait_ready(state: LabState, timeout: float = UP_TIMEOUT_S, say: Any = None) -> None:
    """Until :func:`starting` is empty: ``lab up`` returns a lab whose every part is there."""
    deadline = time.monotonic() + timeout
    said: list[str] = []
    while left := starting(state):
        if left != said and say is not None:
            say("waiting for " + ", ".join(left) + "…")
            said = left
        if time.monotonic() > deadline:
            raise LabError(
                f"still starting after {timeout:.0f} s: {', '.join(left)}; see {state.files['log']}"
            )
        time.sleep(0.1)


def describe(state: LabState) -> list[tuple[str, str]]:
    later = "(lands with lab part {})"
    lb = state.load_balancer
    rows = [
        (
            "lab",
            f"running (pid {state.pid}, up {time.time() - state.started:.0f} s"
            f"{', fast' if state.fast else ''}, scenario {state.scenario})",
        ),
        ("dir", state.dir),
        ("hetzner api", state.hetzner_url),
        ("kubernetes api", state.kubernetes_url or later.format(2)),
        ("kubeconfig", state.files.get("kubeconfig", later.format(2))),
        ("env file", state.files["hcloud_env"]),
        ("console config", state.files["console_config"]),
        (
            "load balancer",
            f"{lb.get('name')} {lb.get('public_ipv4')} (seed address, data only) -> "
            f"{lb.get('address') or later.format(2)}",
        ),
        ("ssh", ", ".join(f"{k}:{v}" for k, v in state.ssh.items()) or later.format(3)),
        ("control api", state.control_url),
        ("log", state.files["log"]),
    ]
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="opsconsole lab", description="The local twin of the cluster.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start the lab in the background")
    p_up.add_argument("--dir", type=Path, default=None)
    p_up.add_argument("--fast", action="store_true", help="scale every lab timing down (x0.2)")
    p_up.add_argument(
        "--speed", type=float, default=None, help="every lab timing times this factor (--fast: 0.2)"
    )
    p_up.add_argument(
        "--postgres-bin",
        type=Path,
        default=None,
        help="run the database on this PostgreSQL installation's bin directory (default: Debian's 15)",
    )
    p_up.add_argument(
        "--no-wait",
        action="store_true",
        help="return once the APIs answer, before the Storage Box's history is seeded (`lab status` says)",
    )
    p_up.add_argument("--scenario", default="seed", help=f"one of: {', '.join(SCENARIOS)}")
    p_up.add_argument("--config", type=Path, default=None, help="cluster description (default: config.toml)")
    p_up.add_argument(
        "--scale",
        default=None,
        metavar="NODES,PODS[,UPDATES_PER_S]",
        help="add load far beyond the seed, for benchmarks",
    )
    for flag in COMPONENT_FLAGS:
        p_up.add_argument(
            f"--{flag}",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"as K3s's --{flag} (repeatable), e.g. node-monitor-grace-period=20s",
        )
    p_status = sub.add_parser("status", help="what runs and where")
    p_status.add_argument("--dir", type=Path, default=None)
    p_status.add_argument("--json", action="store_true")
    p_down = sub.add_parser("down", help="stop everything the lab started")
    p_down.add_argument("--dir", type=Path, default=None)
    p_dns = sub.add_parser("dns", help="set a record in the lab's DNS (the registrar: 'update DNS')")
    p_dns.add_argument("--dir", type=Path, default=None)
    p_dns.add_argument("name", help="e.g. docfast.dev")
    p_dns.add_argument("type", help="A, MX, …")
    p_dns.add_argument("values", nargs="+")
    p_notes = sub.add_parser("notifications", help="what the lab's webhook and SMTP sink received")
    p_notes.add_argument("--json", action="store_true")
    p_storm = sub.add_parser("storm", help="fire the lab's faults at random, one at a time (lab/storm.py)")
    p_storm.add_argument("--seconds", type=float, default=600.0, help="how long (default 600)")
    p_storm.add_argument("--seed", type=int, default=23)
    p_storm.add_argument("--gap", type=float, default=25.0, help="quiet seconds after each fault")
    p_fault = sub.add_parser("fault", help="disturb the lab behind the console's back")
    p_fault.add_argument("--dir", type=Path, default=None)
    fsub = p_fault.add_subparsers(dest="fault", required=True)
    f_power = fsub.add_parser("power", help="power a server off/on without the Hetzner API")
    f_power.add_argument("server")
    f_power.add_argument("state", choices=("on", "off"))
    for api_name in ("hetzner", "kube"):
        f_api = fsub.add_parser(api_name, help=f"make the {api_name} API fail, slow down or throttle")
        f_api.add_argument("--errors", type=float, metavar="SECONDS", help="answer 500 for SECONDS")
        f_api.add_argument("--latency", type=float, metavar="MS", help="add MS of latency")
        f_api.add_argument("--for", dest="for_s", type=float, default=60.0, metavar="SECONDS")
        f_api.add_argument("--throttle", type=float, metavar="SECONDS", help="answer 429 for SECONDS")
        f_api.add_argument("--clear", action="store_true")
        if api_name == "kube":
            f_api.add_argument("--drop-watches", action="store_true", help="end every open watch stream")
            f_api.add_argument("--compact", action="store_true", help="forget history: old watches get 410")
    f_pod = fsub.add_parser(
        "pod",
        help="a Deployment in staging whose pod crash-loops, is OOM-killed, cannot pull or be scheduled",
    )
    f_pod.add_argument("kind", choices=["crash", "oom", "bad-image", "unschedulable"])
    f_pod.add_argument("--clear", action="store_true", help="delete that Deployment again")
    f_kill = fsub.add_parser("kill-pod", help="delete a pod at once (grace period 0)")
    f_kill.add_argument("pod", metavar="NAMESPACE/NAME")
    f_db = fsub.add_parser("db", help="crash the primary, or pause/resume a replica's WAL receiver")
    f_db.add_argument("action", choices=("crash-primary", "pause-receiver", "resume-receiver"))
    f_db.add_argument("instance", nargs="?", help="the replica, for pause/resume-receiver")
    f_part = fsub.add_parser("partition", help="cut a node off from the cluster (or --heal it)")
    f_part.add_argument("node")
    f_part.add_argument("--heal", action="store_true")
    f_box = fsub.add_parser(
        "storagebox",
        help="make the Storage Box unreachable, hold a repository lock, or miss recent backups",
    )
    f_box.add_argument("action", choices=("unreachable", "reachable", "lock", "unlock", "miss", "run"))
    f_box.add_argument(
        "repo", nargs="?", help="k3s-db or k3s-cluster, for lock/unlock/miss/run (run: its scheduled job now)"
    )
    f_box.add_argument(
        "--hours", type=float, default=12.0, help="miss: delete the archives of the last HOURS (default 12)"
    )
    fsub.add_parser(
        "destroy",
        help="everything destroyed: servers, load balancer, network, the cluster's etcd and the database's "
        "disks (the Storage Box survives)",
    )
    f_k3s = fsub.add_parser(
        "k3s",
        help="stop/start k3s on a node, 'restarted' (stock manifests back), or 'upgrade-fails' on a node "
        "(any other K3s version fails to start there; --clear ends it)",
    )
    f_k3s.add_argument("action", choices=("stop", "start", "restarted", "upgrade-fails"))
    f_k3s.add_argument("node", nargs="?")
    f_k3s.add_argument("--clear", action="store_true", help="upgrade-fails: end the fault")
    args = parser.parse_args(argv)
    lab_dir: Path = args.dir or default_lab_dir()
    try:
        if args.cmd == "up":
            state, started = up(
                lab_dir,
                args.config or repo_config(),
                args.fast,
                args.scenario,
                scale=args.scale,
                speed=args.speed,
                postgres_bin=args.postgres_bin,
                k3s_args={flag: getattr(args, flag.replace("-", "_")) for flag in COMPONENT_FLAGS},
            )
            if not args.no_wait:
                wait_ready(state, say=lambda text: print(text, flush=True))
            print(("lab started" if started else "lab already running; reusing it") + f" in {state.dir}")
            for key, value in describe(state):
                print(f"  {key:<15} {value}")
            return 0
        if args.cmd == "status":
            running = read_state(lab_dir.resolve())
            if args.json:
                print(
                    json.dumps(
                        {"running": running is not None, **(running.to_json() if running else {})}, indent=2
                    )
                )
            elif running is None:
                print(f"lab: not running in {lab_dir}")
            else:
                for key, value in describe(running):
                    print(f"{key:<15} {value}")
                print(f"{'starting':<15} {', '.join(starting(running)) or 'nothing: every part is ready'}")
            return 0 if running is not None else 1
        if args.cmd == "down":
            stopped = down(lab_dir)
            print(
                f"lab stopped (pid {stopped.pid}); no listener left"
                if stopped
                else f"lab: not running in {lab_dir}"
            )
            return 0
        running = read_state(lab_dir.resolve())
        if running is None:
            raise LabError(f"no lab runs in {lab_dir}; start one with `opsconsole lab up`")
        if args.cmd == "notifications":
            from lab.notify import received

            got = received(Path(running.dir))
            if args.json:
                print(json.dumps(got, indent=2))
            else:
                for n in got:
                    stamp = time.strftime("%H:%M:%S", time.localtime(n["at"]))
                    print(f"{stamp} {n['sink']:<8} {n['title']}")
                print(f"{len(got)} received")
            return 0
        if args.cmd == "storm":
            from lab.storm import storm

            def say(f: Any) -> None:
                print(
                    f"{time.strftime('%H:%M:%S')} {f.kind} {f.target or ''} {f.end - f.start:.1f} s",
                    flush=True,
                )

            faults = storm(running, args.seconds, args.seed, gap=args.gap, say=say)
            print(f"{len(faults)} faults; their windows are in {Path(running.dir) / 'storm.jsonl'}")
            return 0
        if args.cmd == "dns":
            record = {"name": args.name, "type": args.type, "values": args.values}
            print(json.dumps(control(running, "POST", "/dns", record)))
            return 0
        if args.fault == "power":
            print(
                json.dumps(control(running, "POST", f"/servers/{args.server}/power", {"state": args.state}))
            )
        elif args.fault == "pod":
            print(
                json.dumps(control(running, "POST", "/fault/pod", {"kind": args.kind, "clear": args.clear}))
            )
        elif args.fault == "kill-pod":
            namespace, _, name = args.pod.partition("/")
            print(json.dumps(control(running, "POST", f"/pods/{namespace}/{name}/kill", {})))
        elif args.fault == "db":
            if args.action == "crash-primary":
                print(json.dumps(control(running, "POST", "/fault/db", {"crash_primary": True})))
            elif not args.instance:
                raise LabError(f"db {args.action} needs the replica's instance name (e.g. main-db-2)")
            else:
                paused = args.action == "pause-receiver"
                print(
                    json.dumps(
                        control(running, "POST", "/fault/db", {"receiver": args.instance, "paused": paused})
                    )
                )
        elif args.fault == "partition":
            print(
                json.dumps(
                    control(
                        running, "POST", "/fault/partition", {"node": args.node, "partitioned": not args.heal}
                    )
                )
            )
        elif args.fault == "storagebox":
            if args.action in ("lock", "unlock", "miss", "run") and not args.repo:
                raise LabError(f"storagebox {args.action} needs a repository (k3s-db or k3s-cluster)")
            box_body: dict[str, Any] = (
                {"reachable": args.action == "reachable"}
                if args.action in ("reachable", "unreachable")
                else {args.action: args.repo, "hours": args.hours}
            )
            print(json.dumps(control(running, "POST", "/storagebox", box_body)))
        elif args.fault == "destroy":
            print(json.dumps(control(running, "POST", "/fault/destroy", {})))
        elif args.fault == "k3s":
            if args.action == "restarted":
                print(json.dumps(control(running, "POST", "/k3s/service", {"node": "", "restarted": True})))
            elif not args.node:
                raise LabError(f"k3s {args.action} needs a node name")
            elif args.action == "upgrade-fails":
                fault = {"node": args.node, "upgrade_fails": not args.clear}
                print(json.dumps(control(running, "POST", "/k3s/service", fault)))
            else:
                k3s_state = "stopped" if args.action == "stop" else "running"
                print(
                    json.dumps(
                        control(running, "POST", "/k3s/service", {"node": args.node, "state": k3s_state})
                    )
                )
        else:
            body: dict[str, Any] = {"clear": args.clear}
            if args.errors is not None:
                body["errors_s"] = args.errors
            if args.latency is not None:
                body.update(latency_ms=args.latency, for_s=args.for_s)
            if args.throttle is not None:
                body["throttle_s"] = args.throttle
            if args.fault == "kube":
                body.update(drop_watches=args.drop_watches, compact=args.compact)
            control(running, "POST", f"/fault/{args.fault}", body)
            print("fault set")
        return 0
    except ConfigError as exc:
        print(f"opsconsole: {exc}", file=sys.stderr)
        return 2
    except LabError as exc:
        print(f"opsconsole lab: {exc}", file=sys.stderr)
        return 1
