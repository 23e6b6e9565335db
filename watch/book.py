"""The watcher's memory, in the journal's SQLite file: the open alerts and the outbox of notifications.

Why in the journal: a restarted watcher (a new pod, a crash) must neither send a transition again nor
forget an alert it has to resolve.  Each evaluation's alerts and the notifications it queued are written in
one transaction; a notification is marked sent once apprise delivered it.  A watcher killed between the
delivery and the mark sends that one message again on restart (at least once, never lost): the window is
the length of one SQLite commit.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from watch.rules import Alert, Transition

_SCHEMA = """
CREATE TABLE IF NOT EXISTS watch_alerts (
    code TEXT NOT NULL, subject TEXT NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL,
    since REAL NOT NULL, firing INTEGER NOT NULL, fired_at REAL, sent_at REAL, sent_severity TEXT,
    cleared_at REAL, PRIMARY KEY (code, subject)
);
CREATE TABLE IF NOT EXISTS watch_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, target TEXT NOT NULL, kind TEXT NOT NULL,
    code TEXT NOT NULL, subject TEXT NOT NULL, severity TEXT NOT NULL, title TEXT NOT NULL,
    body TEXT NOT NULL, sent_at REAL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT
);
CREATE TABLE IF NOT EXISTS watch_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_FIELDS = [f.name for f in dataclasses.fields(Alert)]
_QUEUE = (
    "INSERT INTO watch_outbox (at, target, kind, code, subject, severity, title, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class Message:
    id: int
    at: float
    target: str
    kind: str
    code: str
    subject: str
    severity: str
    title: str
    body: str
    attempts: int


class AlertBook:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(directory / "journal.sqlite", timeout=10, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._recorded: list[tuple[object, ...]] | None = None  # the alerts as last written

    def close(self) -> None:
        self._db.close()

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM watch_meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def put(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO watch_meta VALUES (?, ?)", (key, value))

    def alerts(self) -> list[Alert]:
        rows = self._db.execute(f"SELECT {', '.join(_FIELDS)} FROM watch_alerts").fetchall()
        return [Alert(**{**dict(zip(_FIELDS, r, strict=True)), "firing": bool(r[5])}) for r in rows]

    def record(self, alerts: Iterable[Alert], queued: Iterable[tuple[Transition, str, str, str]]) -> None:
        """The alerts as they stand now and the messages (transition, target, title, body) to deliver.

        Most evaluations change nothing (a probe's answer, a watch event elsewhere): then nothing is
        written, so the journal is not committed to on every wake."""
        rows = sorted(tuple(getattr(a, f) for f in _FIELDS) for a in alerts)
        messages = [
            (t.at, target, t.kind, t.alert.code, t.alert.subject, t.alert.severity, title, body)
            for t, target, title, body in queued
        ]
        if rows == self._recorded and not messages:
            return
        with self._db:
            self._db.execute("DELETE FROM watch_alerts")
            self._db.executemany(f"INSERT INTO watch_alerts VALUES ({', '.join('?' * len(_FIELDS))})", rows)
            self._db.executemany(_QUEUE, messages)
        self._recorded = rows

    def queue(
        self, at: float, target: str, kind: str, subject: str, severity: str, title: str, body: str
    ) -> None:
        """A message that is no alert's transition (a scheduled run's verdict)."""
        self._db.execute(_QUEUE, (at, target, kind, "schedule", subject, severity, title, body))

    def unsent(self, target: str | None = None) -> list[Message]:
        rows = self._db.execute(
            "SELECT id, at, target, kind, code, subject, severity, title, body, attempts FROM watch_outbox "
            "WHERE sent_at IS NULL AND (? IS NULL OR target = ?) ORDER BY id",
            (target, target),
        ).fetchall()
        return [Message(*r) for r in rows]

    def sent(self, message_id: int) -> None:
        self._db.execute("UPDATE watch_outbox SET sent_at = ? WHERE id = ?", (time.time(), message_id))

    def failed(self, message_id: int, error: str) -> None:
        self._db.execute(
            "UPDATE watch_outbox SET attempts = attempts + 1, error = ? WHERE id = ?", (error, message_id)
        )

    def history(self, limit: int = 100) -> list[tuple[float, str, str, str, str, float | None]]:
        """(queued at, target, kind, code, subject, sent at), newest first: what ``watch`` said."""
        return self._db.execute(
            "SELECT at, target, kind, code, subject, sent_at FROM watch_outbox ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
