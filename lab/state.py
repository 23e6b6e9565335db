"""The lab's on-disk state: ``DIR/state.json`` (endpoints, pid) and the secrets it generated.

``state.json`` is written last, atomically, once every listener is bound, and removed on a clean stop, so
its presence plus a live pid holding ``DIR/lab.lock`` is the definition of "the lab is running".
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PG_BIN_ENV = "OPSCONSOLE_LAB_PG_BIN"  # `lab up --postgres-bin`: another PostgreSQL for the database


@dataclass
class LabState:
    dir: str
    pid: int
    started: float
    fast: bool
    scenario: str
    hetzner_url: str
    control_url: str
    files: dict[str, str] = field(default_factory=dict)
    load_balancer: dict[str, Any] = field(default_factory=dict)
    kubernetes_url: str | None = None
    ssh: dict[str, int] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.dir)

    def api_listeners(self) -> list[tuple[str, int]]:
        """The APIs that are up whenever the lab is (SSH follows the servers' power, so it may not be)."""
        out = []
        for url in (self.hetzner_url, self.control_url, self.kubernetes_url):
            if url:
                hostport = url.split("://", 1)[1].split("/", 1)[0]
                host, _, port = hostport.rpartition(":")
                out.append((host, int(port)))
        return out

    def listeners(self) -> list[tuple[str, int]]:
        """Every (host, port) the lab listens on; `lab down` checks each is closed afterwards."""
        out = self.api_listeners()
        out += [("127.0.0.1", port) for port in self.ssh.values()]
        if self.load_balancer.get("address"):
            host, _, port = str(self.load_balancer["address"]).rpartition(":")
            out.append((host, int(port)))
        return out

    def secret(self, name: str) -> str:
        return (self.path / "secrets" / name).read_text().strip()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def state_file(lab_dir: Path) -> Path:
    return lab_dir / "state.json"


def write_state(state: LabState) -> None:
    target = state_file(state.path)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2))
    os.replace(tmp, target)


def read_state(lab_dir: Path) -> LabState | None:
    """The running lab's state, or None when none runs there (a stale file is ignored)."""
    try:
        data = json.loads(state_file(lab_dir).read_text())
    except (OSError, ValueError):
        return None
    state = LabState(**data)
    return state if lock_held(lab_dir) and pid_alive(state.pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_held(lab_dir: Path) -> bool:
    """True when some process holds ``lab.lock`` (the daemon keeps it for its whole life)."""
    lock = lab_dir / "lab.lock"
    if not lock.exists():
        return False
    with lock.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def write_secret(lab_dir: Path, name: str, value: str) -> Path:
    secrets_dir = lab_dir / "secrets"
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = secrets_dir / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return path
