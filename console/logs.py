"""A pod's log, as the log subresource serves it: the query (container, tail, since, previous,
timestamps, follow), the stream, and how a line is shown (CNPG's JSON lines pretty-printed).

The same reading serves the logs screen and ``--action logs``; neither holds more than it shows."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from console.clients.kube import request, stream_lines
from console.errors import UsageError

SINCE_CHOICES = ("1m", "5m", "15m", "1h")  # the screen's cycle; the flag takes any N s|m|h|d
_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_seconds(text: str) -> int:
    """``5m`` → 300; a clear :class:`UsageError` for anything else."""
    m = _SINCE.match(text.strip())
    if not m or int(m.group(1)) < 1:
        raise UsageError(f"--since takes a duration such as 30s, 5m, 1h or 2d, not {text!r}")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


@dataclass(frozen=True)
class LogQuery:
    namespace: str
    pod: str
    container: str | None = None
    follow: bool = False
    tail: int | None = None
    since_s: int | None = None
    previous: bool = False
    timestamps: bool = False

    def params(self) -> dict[str, str]:
        q: dict[str, str] = {}
        if self.container:
            q["container"] = self.container
        if self.follow and not self.previous:
            q["follow"] = "true"
        if self.tail is not None:
            q["tailLines"] = str(self.tail)
        if self.since_s is not None:
            q["sinceSeconds"] = str(self.since_s)
        if self.previous:
            q["previous"] = "true"
        if self.timestamps:
            q["timestamps"] = "true"
        return q


def pod_log(api: Any, query: LogQuery) -> AsyncIterator[str]:
    """The lines, as they come (``follow``: until the container's run ends or the caller stops)."""
    return stream_lines(api, f"/api/v1/namespaces/{query.namespace}/pods/{query.pod}/log", query.params())


async def pod_containers(api: Any, namespace: str, pod: str) -> list[str]:
    """The pod's containers, in its spec's order (the first is the one a log shows by default)."""
    obj = await request(api, "GET", f"/api/v1/namespaces/{namespace}/pods/{pod}")
    return [str(c["name"]) for c in (obj.get("spec") or {}).get("containers") or []]


def pretty(line: str) -> str:
    """A JSON object line (CNPG's instance manager and PostgreSQL) as ``level logger: msg key=value…``;
    anything else as it is.  A leading timestamp (``timestamps=true``) is kept in front."""
    stamp, _, rest = line.partition(" ") if line[:4].isdigit() and "T" in line[:20] else ("", "", line)
    body = rest.strip()
    if not body.startswith("{"):
        return line
    try:
        doc = json.loads(body)
    except ValueError:
        return line
    if not isinstance(doc, dict):
        return line
    level = str(doc.pop("level", "")).upper()
    logger = str(doc.pop("logger", ""))
    msg = str(doc.pop("msg", doc.pop("message", "")))
    doc.pop("ts", None)
    extra = " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in doc.items())
    text = " ".join(part for part in (level, f"{logger}:" if logger else "", msg, extra) if part)
    return f"{stamp} {text}" if stamp else text
