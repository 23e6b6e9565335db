"""The month's SLO spend, kept in the cluster: a ConfigMap (``opsconsole-slo`` in the lock's namespace).

Why in the cluster, like the lock: the watcher measures outages where it runs (often in the cluster
itself), the drills where the operator runs them, and ``promote``'s gate must read the same figures from
any laptop.  One key per calendar month (UTC, ``2026-12``), its value a JSON object of seconds by source:
``probe:prod`` and ``probe:staging`` (the watcher's probes through the load balancer) and ``drill`` (the
prod HTTP outage the drills measured).  The budget (``slo.monthly_budget_s``) is spent by production's
outages: ``probe:prod`` and ``drill``; staging's are recorded, not counted.

Updates are read-modify-write with the ConfigMap's ``resourceVersion`` (a stale one is 409, retried), so
two writers never lose each other's seconds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from console.clients.kube import KubeError, request

NAME = "opsconsole-slo"
COUNTED = ("probe:prod", "drill")


def month_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m")


@dataclass(frozen=True)
class MonthSpend:
    month: str
    seconds: dict[str, float]
    budget_s: float

    @property
    def spent_s(self) -> float:
        return sum(v for k, v in self.seconds.items() if k in COUNTED)

    @property
    def remaining_s(self) -> float:
        return self.budget_s - self.spent_s

    def sentence(self) -> str:
        return f"{self.month}: {self.spent_s:.0f} s of the {self.budget_s:.0f} s outage budget spent"


def _path(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps/{NAME}"


async def read(api: Any, namespace: str, budget_s: float, at: float | None = None) -> MonthSpend | None:
    """This month's spend, or None when no ledger exists (no watcher or drill has written one)."""
    month = month_of(at or time.time())
    try:
        cm = await request(api, "GET", _path(namespace))
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise
    raw = (cm.get("data") or {}).get(month)
    seconds = {str(k): float(v) for k, v in json.loads(raw).items()} if raw else {}
    return MonthSpend(month, seconds, budget_s)


async def add(api: Any, namespace: str, amounts: dict[str, float], at: float | None = None) -> None:
    """Add ``amounts`` (seconds by source) to the month's figures."""
    if not any(amounts.values()):
        return
    month = month_of(at or time.time())
    for _ in range(5):
        try:
            cm = await request(api, "GET", _path(namespace))
        except KubeError as exc:
            if exc.status != 404:
                raise
            cm = None
        data = dict((cm or {}).get("data") or {})
        seconds = json.loads(data.get(month) or "{}")
        for source, value in amounts.items():
            seconds[source] = round(float(seconds.get(source, 0.0)) + value, 3)
        data[month] = json.dumps(seconds, sort_keys=True)
        try:
            if cm is None:
                body = {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": NAME,
                        "namespace": namespace,
                        "labels": {"app.kubernetes.io/managed-by": "opsconsole"},
                    },
                    "data": data,
                }
                await request(api, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body)
            else:
                await request(api, "PUT", _path(namespace), {**cm, "data": data})
            return
        except KubeError as exc:
            if exc.status != 409:  # 409: someone else wrote (or created) it in between: read again
                raise
    raise KubeError(409, "Conflict", f"{NAME}: five conflicting writes in a row")
