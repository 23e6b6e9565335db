"""The journal: every mutating action, step by step, in SQLite — plus an append-only audit log.

Why SQLite with a commit per step: a console killed mid-drill (even SIGKILL) leaves an action whose last
state is ``running`` and whose steps say what was changed (``fault-applied``) and what was already undone
(``rolled-back``).  The next start finds it (:meth:`Journal.unfinished`) and finishes it.  The audit log
(``audit.log``, one JSON object per line) is the human trail: who, when, what, result.

Secrets never enter: :func:`redact` blanks any key that smells like one before a row is written.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from console.paths import state_home

SECRET_WORDS = ("password", "passphrase", "token", "secret", "private_key", "authorization")


def redact(value: Any) -> Any:
    """``value`` with every secret-looking key's value replaced by ``"***"``, recursively."""
    if isinstance(value, dict):
        return {
            k: "***" if any(w in str(k).lower() for w in SECRET_WORDS) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def running_holder() -> str:
    """What a journal entry records as its holder: who, and which process (``user@host pid N``)."""
    return f"{operator()} pid {os.getpid()}"


def operator() -> str:
    """Who acts: ``user@host`` (the journal's and the lock's holder prefix)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


_RUNNING_HERE: set[str] = set()  # the entries this process has begun and not finished or let go


def _running_since(pid: int, when: float) -> bool:
    """Process ``pid`` runs and began before ``when`` (a pid reused since is not the console that wrote
    the entry)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        pass
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
    except (OSError, ValueError, IndexError, StopIteration):  # no /proc: trust the pid
        return True
    return boot + ticks / os.sysconf("SC_CLK_TCK") <= when + 1.0


@dataclass
class Entry:
    id: str
    action: str
    params: dict[str, Any]
    holder: str
    started: float
    state: str
    finished: float | None = None
    result: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def process(self) -> tuple[str, int] | None:
        """(host, pid) of the console that runs it, from its holder (``user@host pid N …``) or its lock
        step's; None when neither says (entries of consoles that did not record it)."""
        holders = [self.holder, *(s["data"].get("holder", "") for s in self.steps if s["step"] == "lock")]
        for holder in holders:
            m = re.match(r"[^@\s]*@(\S+) pid (\d+)", str(holder))
            if m:
                return m.group(1), int(m.group(2))
        return None

    def alive(self) -> bool:
        """Its console is still running (on this host): the action is in progress, not left unfinished.
        In this very process, only while it runs (a dashboard outlives the actions it started)."""
        where = self.process()
        if where is None or where[0] != socket.gethostname():
            return False
        if where[1] == os.getpid():
            return self.id in _RUNNING_HERE
        return _running_since(where[1], self.started)

    def applied(self) -> list[dict[str, Any]]:
        """Faults applied and not yet rolled back (by their ``key``), oldest first.  ``superseded``: an
        action past its point of no return (a deleted server) has nothing left to undo for that key."""
        undone = {s["data"].get("key") for s in self.steps if s["status"] in ("rolled-back", "superseded")}
        return [
            s for s in self.steps if s["status"] == "fault-applied" and s["data"].get("key") not in undone
        ]


class Journal:
    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or state_home()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "journal.sqlite"
        self.audit_path = self.dir / "audit.log"
        self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS actions (
                id TEXT PRIMARY KEY, action TEXT NOT NULL, params TEXT NOT NULL, holder TEXT NOT NULL,
                started REAL NOT NULL, finished REAL, state TEXT NOT NULL, result TEXT NOT NULL DEFAULT '{}'
            );
            CREATE TABLE IF NOT EXISTS steps (
                action_id TEXT NOT NULL, seq INTEGER NOT NULL, at REAL NOT NULL, step TEXT NOT NULL,
                status TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (action_id, seq)
            );
            """
        )

    def close(self) -> None:
        self._db.close()

    def _audit(self, record: dict[str, Any]) -> None:
        with self.audit_path.open("a") as f:
            f.write(json.dumps(redact(record), default=str) + "\n")

    def begin(self, action: str, params: dict[str, Any], holder: str) -> str:
        action_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{action}-{uuid.uuid4().hex[:6]}"
        now = time.time()
        self._db.execute(
            "INSERT INTO actions (id, action, params, holder, started, state) "
            "VALUES (?, ?, ?, ?, ?, 'running')",
            (action_id, action, json.dumps(redact(params)), holder, now),
        )
        self._audit(
            {"at": now, "id": action_id, "action": action, "event": "begin", "holder": holder, **params}
        )
        _RUNNING_HERE.add(action_id)
        return action_id

    def let_go(self, action_id: str) -> None:
        """Leave the entry unfinished on purpose (a rollback that failed): from now on it is what
        ``recover`` finishes, even while this process lives."""
        _RUNNING_HERE.discard(action_id)

    def step(self, action_id: str, step: str, status: str, data: dict[str, Any] | None = None) -> None:
        now = time.time()
        with self._db:
            (seq,) = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE action_id = ?", (action_id,)
            ).fetchone()
            self._db.execute(
                "INSERT INTO steps VALUES (?, ?, ?, ?, ?, ?)",
                (action_id, seq, now, step, status, json.dumps(redact(data or {}), default=str)),
            )
        if status in ("fault-applied", "rolled-back", "failed"):
            self._audit({"at": now, "id": action_id, "event": status, "step": step, **(data or {})})

    def finish(self, action_id: str, state: str, result: dict[str, Any] | None = None) -> None:
        _RUNNING_HERE.discard(action_id)
        now = time.time()
        self._db.execute(
            "UPDATE actions SET state = ?, finished = ?, result = ? WHERE id = ?",
            (state, now, json.dumps(redact(result or {}), default=str), action_id),
        )
        self._audit({"at": now, "id": action_id, "event": "finish", "state": state, **(result or {})})

    def _entry(self, row: tuple[Any, ...]) -> Entry:
        e = Entry(row[0], row[1], json.loads(row[2]), row[3], row[4], row[6], row[5], json.loads(row[7]))
        e.steps = [
            {"seq": s[0], "at": s[1], "step": s[2], "status": s[3], "data": json.loads(s[4])}
            for s in self._db.execute(
                "SELECT seq, at, step, status, data FROM steps WHERE action_id = ? ORDER BY seq", (e.id,)
            )
        ]
        return e

    def get(self, action_id: str) -> Entry | None:
        row = self._db.execute("SELECT * FROM actions WHERE id = ?", (action_id,)).fetchone()
        return self._entry(row) if row else None

    def unfinished(self) -> list[Entry]:
        """Actions whose console stopped before they finished (not the ones still running: another
        console's drill in progress is the lock's business, and must never be "recovered")."""
        rows = self._db.execute("SELECT * FROM actions WHERE state = 'running' ORDER BY started").fetchall()
        return [e for e in (self._entry(r) for r in rows) if not e.alive()]

    def recent(self, limit: int = 20) -> list[Entry]:
        rows = self._db.execute("SELECT * FROM actions ORDER BY started DESC LIMIT ?", (limit,)).fetchall()
        return [self._entry(r) for r in rows]
