"""A fault storm: the lab's faults fired at random, one at a time, and what the watcher said about them.

:func:`storm` fires, for a given time, one fault after another — watch streams dropped, the Kubernetes
or the Hetzner API answering 500 or 429, a worker powered off, a replica's WAL receiver paused, the Storage
Box unreachable — each for a random 5–40 s (``--min``/``--max``) and a quiet ``gap`` after it, and records
each fault's window in ``DIR/storm.jsonl``.  :func:`attribute` reads that and what the lab's webhook
received (``DIR/notifications.jsonl``) and gives each alert to the fault whose window (its start to its
end plus ``recovery``) holds the alert's first sighting ("since"): what no fault explains, what fired
twice in one fault, what was left open.

``opsconsole lab storm [--seconds 600] [--seed N]`` runs one against the running lab; ``bench/watch_storm.py``
and ``tests/test_watch.py`` run one against a watcher.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.notify import received
from lab.state import LabState

KINDS = (
    "kube-drop",
    "kube-500",
    "kube-429",
    "hetzner-500",
    "hetzner-429",
    "power",
    "wal-pause",
    "storagebox",
)
WORKERS = ("k3s-w1", "k3s-w2")
_HEADER = re.compile(r"^\[(FIRING|RESOLVED)[^\]]*\] ([^:]+): (.+?)(?: and \d+ more)?(?: \(.*\))?$")
_SINCE = re.compile(r"since (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")


@dataclass
class StormFault:
    kind: str
    target: str
    start: float
    end: float = 0.0


@dataclass
class Said:
    """One header line of a message: FIRING or RESOLVED, the alert, since when."""

    kind: str
    code: str
    subject: str
    since: float


@dataclass
class Attributed:
    fault: StormFault
    said: list[Said] = field(default_factory=list)


def _control(state: LabState) -> Callable[[str, str, dict[str, Any]], Any]:
    from lab.cli import control

    return lambda method, path, body: control(state, method, path, body)


def fire(state: LabState, kind: str, seconds: float, rng: random.Random) -> StormFault:
    """One fault for ``seconds`` (``kube-drop`` is instantaneous)."""
    call = _control(state)
    target = ""
    start = time.time()
    if kind == "kube-drop":
        call("POST", "/fault/kube", {"drop_watches": True})
    elif kind in ("kube-500", "kube-429", "hetzner-500", "hetzner-429"):
        api, code = kind.split("-")
        call("POST", f"/fault/{api}", {"errors_s" if code == "500" else "throttle_s": seconds})
        time.sleep(seconds)
    elif kind == "power":
        target = rng.choice(WORKERS)
        call("POST", f"/servers/{target}/power", {"state": "off"})
        time.sleep(seconds)
        call("POST", f"/servers/{target}/power", {"state": "on"})
    elif kind == "wal-pause":
        db = call("GET", "/db", {})
        target = next(n for n in sorted(db["ports"]) if n != db["primary"])
        call("POST", "/fault/db", {"receiver": target, "paused": True})
        time.sleep(seconds)
        call("POST", "/fault/db", {"receiver": target, "paused": False})
    elif kind == "storagebox":
        call("POST", "/storagebox", {"reachable": False})
        time.sleep(seconds)
        call("POST", "/storagebox", {"reachable": True})
    else:
        raise ValueError(f"unknown fault {kind!r}")
    return StormFault(kind, target, start, time.time())


def storm(
    state: LabState,
    seconds: float,
    seed: int = 23,
    shortest: float = 5.0,
    longest: float = 40.0,
    gap: float = 25.0,
    say: Callable[[StormFault], None] | None = None,
) -> list[StormFault]:
    """Faults one after another for ``seconds``; each appended to ``DIR/storm.jsonl`` as it ends."""
    rng = random.Random(seed)
    log = Path(state.dir) / "storm.jsonl"
    faults = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        fault = fire(state, rng.choice(KINDS), round(rng.uniform(shortest, longest), 1), rng)
        faults.append(fault)
        with log.open("a") as f:
            f.write(json.dumps(asdict(fault)) + "\n")
        if say is not None:
            say(fault)
        time.sleep(gap)
    return faults


def said(lab_dir: Path, sink: str = "webhook") -> list[Said]:
    """Every alert header line ``sink`` received, with its "since"."""
    out = []
    for n in received(lab_dir):
        if n["sink"] != sink:
            continue
        grouped = " more (" in n["title"]
        blocks = n["body"].split("\n\n") if grouped else [n["title"] + "\n" + n["body"]]
        for block in blocks:
            m = _HEADER.match(block.splitlines()[0])
            since = _SINCE.search(block)
            if m and since:
                at = datetime.strptime(since.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
                out.append(Said(m.group(1), m.group(2), m.group(3), at))
    return out


def attribute(
    faults: list[StormFault], lines: list[Said], recovery: float
) -> tuple[list[Attributed], list[Said]]:
    """Each FIRING line to the latest fault that began before its "since" and whose window (start - 2 s to
    end + ``recovery``) holds it; each RESOLVED line to the fault of its FIRING.  Returns the faults with
    what they were said to cause, and the FIRING lines no fault explains (a RESOLVED line whose FIRING
    came before the storm is left out: it is not the storm's)."""
    out = [Attributed(f) for f in faults]
    unexplained = []
    open_by: dict[tuple[str, str], Attributed | None] = {}
    for line in sorted(lines, key=lambda s: (s.since, s.kind != "FIRING")):
        key = (line.code, line.subject)
        if line.kind == "FIRING":
            owner = next(
                (a for a in reversed(out) if a.fault.start - 2 <= line.since <= a.fault.end + recovery), None
            )
            open_by[key] = owner
            if owner is None:
                unexplained.append(line)
                continue
        else:
            owner = open_by.pop(key, None)
            if owner is None:
                continue
        owner.said.append(line)
    return out, unexplained
