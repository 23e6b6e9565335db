"""The pods' log subresource as the kubelet serves it through the API server (``GET …/pods/NAME/log``).

What a container writes is kept per container, as the kubelet keeps it: the current run's lines and, after
a restart, the previous run's (``previous=true``).  The query is read and refused the way the real server
does (``pkg/registry/core/pod/strategy.go`` LogLocation, ``ValidatePodLogOptions``, the kubelet's
``validateContainerLogStatus``):

- no ``container`` on a pod with several: 400 "a container name must be specified for pod P, choose one
  of: [a b]"; a name the pod lacks: 400 "container C is not valid for pod P";
- a container still waiting: 400 "container "C" in pod "P" is waiting to start: REASON" (an image that
  cannot be pulled says so); ``previous`` without a terminated run: 400 "previous terminated container …
  not found"; a pod not yet on a node: an empty 200, as the API server answers with no location;
- ``sinceSeconds`` < 1, ``tailLines`` < 0, ``limitBytes`` < 1, or both ``sinceSeconds`` and ``sinceTime``:
  422 Invalid ``PodLogOptions``.

``follow=true`` keeps the response open, chunked, and writes each new line as it is logged, until the
container's run ends (a restart), the pod is deleted or the client goes away.  ``timestamps=true``
prefixes each line with its RFC 3339 time in nanoseconds, as the kubelet does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from lab.kube.errors import KubeError, bad_request

KEEP_LINES = 5000  # per container run: the kubelet rotates its files; the lab keeps the newest lines


@dataclass
class _Run:
    lines: list[tuple[float, str]] = field(default_factory=list)  # the newest KEEP_LINES
    written: int = 0  # every line ever written (a follower's place, which trimming does not move)
    ended: bool = False


@dataclass
class _Container:
    current: _Run = field(default_factory=_Run)
    previous: _Run | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


def _stamp(t: float) -> str:
    dt = datetime.fromtimestamp(t, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(t * 1e9) % 1_000_000_000:09d}Z"


def _invalid(pod: str, field_name: str, value: Any, why: str) -> KubeError:
    return KubeError(
        422,
        "Invalid",
        f'PodLogOptions "{pod}" is invalid: {field_name}: Invalid value: {value}: {why}',
        {"name": pod, "kind": "PodLogOptions", "causes": [{"field": field_name, "message": why}]},
    )


def _int(query: Any, key: str) -> int | None:
    raw = query.get(key)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f'strconv.ParseInt: parsing "{raw}": invalid syntax') from None


def _bool(query: Any, key: str) -> bool:
    raw = str(query.get(key, "false")).lower()
    if raw not in ("true", "false", "1", "0", "t", "f"):
        raise bad_request(f'strconv.ParseBool: parsing "{raw}": invalid syntax')
    return raw in ("true", "1", "t")


class PodLogs:
    """Every container's output in the lab; the kubelet side (``write``, ``restarted``) and the API side
    (``serve``)."""

    def __init__(self) -> None:
        self._containers: dict[tuple[str, str, str], _Container] = {}

    def _get(self, namespace: str, pod: str, container: str) -> _Container:
        return self._containers.setdefault((namespace, pod, container), _Container())

    def _wake(self, c: _Container) -> None:
        c.changed.set()
        c.changed = asyncio.Event()

    def write(self, namespace: str, pod: str, container: str, line: str) -> None:
        c = self._get(namespace, pod, container)
        c.current.lines.append((time.time(), line.rstrip("\n")))
        c.current.written += 1
        del c.current.lines[:-KEEP_LINES]
        self._wake(c)

    def ended(self, namespace: str, pod: str, container: str) -> None:
        """The container's run ended (it exited, was killed): its followers' streams end."""
        c = self._get(namespace, pod, container)
        c.current.ended = True
        self._wake(c)

    def started(self, namespace: str, pod: str, container: str) -> None:
        """A new run starts; an ended one's lines become ``previous``."""
        c = self._get(namespace, pod, container)
        if c.current.ended:
            c.previous, c.current = c.current, _Run()
            self._wake(c)

    def forget(self, namespace: str, pod: str) -> None:
        """The pod is gone: its followers' streams end."""
        for key in [k for k in self._containers if k[:2] == (namespace, pod)]:
            c = self._containers.pop(key)
            c.current.ended = True
            self._wake(c)

    async def serve(self, request: web.Request, pod: dict[str, Any]) -> web.StreamResponse:
        q = request.query
        name = pod["metadata"]["name"]
        container = self._container(pod, q.get("container"))
        since_s, tail, limit = _int(q, "sinceSeconds"), _int(q, "tailLines"), _int(q, "limitBytes")
        if since_s is not None and q.get("sinceTime"):
            raise _invalid(
                name, "sinceSeconds", since_s, "at most one of `sinceTime` or `sinceSeconds` may be specified"
            )
        if since_s is not None and since_s < 1:
            raise _invalid(name, "sinceSeconds", since_s, "must be greater than 0")
        if tail is not None and tail < 0:
            raise _invalid(name, "tailLines", tail, "must be greater than or equal to 0")
        if limit is not None and limit < 1:
            raise _invalid(name, "limitBytes", limit, "must be greater than 0")
        follow, previous, stamps = _bool(q, "follow"), _bool(q, "previous"), _bool(q, "timestamps")
        if not pod["spec"].get("nodeName"):
            return web.Response(text="", content_type="text/plain")  # no node yet: no location, no logs
        self._check_status(pod, container, previous)
        since = time.time() - since_s if since_s is not None else _since_time(q.get("sinceTime"))
        c = self._get(pod["metadata"]["namespace"], name, container)
        # While a crashed container waits to restart, its ended run is both "current" and "previous".
        run = (c.current if c.current.ended else c.previous or _Run()) if previous else c.current
        lines = [(t, s) for t, s in run.lines if since is None or t >= since]
        if tail is not None:
            lines = lines[len(lines) - tail :] if tail else []
        if not (follow and not previous):
            text = "".join(self._line(t, s, stamps) for t, s in lines)
            return web.Response(text=text[:limit] if limit else text, content_type="text/plain")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await self._follow(resp, c, run, lines, stamps, limit)
        return resp

    async def _follow(
        self,
        resp: web.StreamResponse,
        c: _Container,
        run: _Run,
        lines: list[tuple[float, str]],
        stamps: bool,
        limit: int | None,
    ) -> None:
        sent, budget = run.written, limit
        for t, s in lines:
            budget = await self._send(resp, self._line(t, s, stamps), budget)
        while not run.ended and budget != 0:
            changed = c.changed
            await changed.wait()
            new = min(run.written - sent, len(run.lines))  # a follower too slow for KEEP_LINES skips
            fresh, sent = (run.lines[-new:] if new else []), run.written
            budget = await self._send(resp, "".join(self._line(t, s, stamps) for t, s in fresh), budget)

    @staticmethod
    async def _send(resp: web.StreamResponse, text: str, budget: int | None) -> int | None:
        if budget is not None:
            text, budget = text[:budget], max(0, budget - len(text))
        await resp.write(text.encode())
        return budget

    @staticmethod
    def _line(t: float, s: str, stamps: bool) -> str:
        return f"{_stamp(t)} {s}\n" if stamps else f"{s}\n"

    @staticmethod
    def _container(pod: dict[str, Any], asked: str | None) -> str:
        name = pod["metadata"]["name"]
        names: list[str] = [c["name"] for c in pod["spec"].get("containers", [])]
        inits = [c["name"] for c in pod["spec"].get("initContainers", [])]
        if not asked:
            if len(names) == 1:
                return names[0]
            if not names:
                raise bad_request(f"a container name must be specified for pod {name}")
            msg = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
            if inits:
                msg += f" or one of the init containers: [{' '.join(inits)}]"
            raise bad_request(msg)
        if asked not in names + inits:
            raise bad_request(f"container {asked} is not valid for pod {name}")
        return str(asked)

    @staticmethod
    def _check_status(pod: dict[str, Any], container: str, previous: bool) -> None:
        name = pod["metadata"]["name"]
        statuses = pod.get("status", {}).get("containerStatuses") or []
        cs = next((s for s in statuses if s.get("name") == container), None)
        last = ((cs or {}).get("lastState") or {}).get("terminated")
        if previous:
            if not last:
                raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            return
        state = (cs or {}).get("state") or {}
        if cs is None or ("waiting" in state and not last):
            reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
            why = {
                "ErrImagePull": "image can't be pulled",
                "ImagePullBackOff": "trying and failing to pull image",
            }.get(reason, reason)
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {why}')


def _since_time(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise bad_request(f'parsing time "{raw}" as "2006-01-02T15:04:05Z07:00": cannot parse') from None
