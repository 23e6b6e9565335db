"""Writes to the Kubernetes API as raw JSON requests through ``kubernetes.aio``'s own request path.

Why raw: the typed API classes cost seconds of import and model set-up, and the console needs only a few
verbs.  Every patch names its content type on purpose (a dict sent as strategic-merge-patch is refused
with 415 by a real API server for custom resources; CNPG objects take merge-patch), and every failure is
raised as :class:`KubeError` carrying the API's own ``Status`` reason and message.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from console.errors import ExitCode, OpsError, Verdict

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class KubeError(OpsError):
    """A refused or failed request: HTTP status, the Status ``reason`` and the server's message.  No rights
    (401, 403) is a refusal (exit 3); anything else a failure (status 0: unreachable)."""

    def __init__(self, status: int, reason: str, message: str, causes: tuple[str, ...] = ()) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = causes  # the Status details' causes (which PodDisruptionBudget refused an eviction)
        if status in (401, 403):
            self.exit_code, self.verdict = ExitCode.REFUSED, Verdict.REFUSED

    def sentence(self) -> str:
        if self.status == 0:
            return f"the Kubernetes API is unreachable: {self.message}"
        return f"the Kubernetes API refused ({self.status} {self.reason}): {self.message}"


async def request(
    api: Any,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One request; the decoded JSON answer, or :class:`KubeError` (status 0 when unreachable)."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    try:
        method, url, hdrs, data, post = await api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = await api.call_api(method, url, hdrs, data, post, _preload_content=False)
        raw = await resp.read()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise KubeError(0, "Unreachable", f"{type(exc).__name__}: {exc}") from None
    try:
        doc: dict[str, Any] = json.loads(raw) if raw else {}
    except ValueError:
        doc = {}
    if resp.status >= 400:
        causes = tuple(str(c.get("message")) for c in (doc.get("details") or {}).get("causes") or [])
        reason, message = str(doc.get("reason") or ""), str(doc.get("message") or raw[:200])
        raise KubeError(resp.status, reason, message, causes)
    return doc


T = TypeVar("T")
TRANSIENT = (0, 429, 500, 502, 503, 504)  # no answer, throttled, or the API server (re)starting


async def answered(call: Callable[[], Awaitable[T]], timeout: float = 120.0) -> T:
    """``call()`` again every 0.5 s while the API server does not answer (a K3s server restarting refuses
    connections for a while); any other error, or still no answer after ``timeout``, is raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except KubeError as exc:
            if exc.status not in TRANSIENT or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)


async def patch(api: Any, path: str, body: Any, content_type: str = MERGE_PATCH) -> dict[str, Any]:
    return await request(api, "PATCH", path, body, content_type)


async def delete(api: Any, path: str, grace_period_s: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
    if grace_period_s is not None:
        body["gracePeriodSeconds"] = grace_period_s
    return await request(api, "DELETE", path, body)


async def evict(api: Any, namespace: str, name: str) -> dict[str, Any]:
    """The Eviction subresource (honours PodDisruptionBudgets: 429 while a budget forbids it)."""
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    }
    return await request(api, "POST", f"/api/v1/namespaces/{namespace}/pods/{name}/eviction", body)


async def update_fresh(
    api: Any,
    path: str,
    build: Callable[[dict[str, Any]], tuple[str, Any, str]],
    attempts: int = 5,
) -> dict[str, Any]:
    """Read ``path``, send what ``build(current)`` returns — (method, body, content type), the body
    carrying the read resourceVersion — and on 409 Conflict read again and retry.  The object as it was
    read before the successful write."""
    for attempt in range(attempts):
        current = await request(api, "GET", path)
        method, body, content = build(current)
        try:
            await request(api, method, path, body, content)
            return current
        except KubeError as exc:
            if exc.status != 409 or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


async def pods_on(api: Any, node: str) -> list[dict[str, Any]]:
    """Every pod bound to ``node`` (the ``spec.nodeName`` field selector)."""
    doc = await request(api, "GET", "/api/v1/pods", query={"fieldSelector": f"spec.nodeName={node}"})
    return list(doc.get("items") or [])


async def set_schedulable(api: Any, node: str, schedulable: bool) -> dict[str, Any]:
    """``kubectl cordon`` (False) / ``uncordon`` (True): the node's ``spec.unschedulable``."""
    body = {"spec": {"unschedulable": None if schedulable else True}}
    return await patch(api, f"/api/v1/nodes/{node}", body, STRATEGIC_PATCH)


async def rollout_restart(api: Any, namespace: str, deployment: str, stamp: str) -> dict[str, Any]:
    """``kubectl rollout restart``: a new pod-template annotation, so the Deployment replaces its pods
    (and the scheduler places them again — how a spread lost to a node outage is regained)."""
    body = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
    return await patch(
        api, f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}", body, STRATEGIC_PATCH
    )


async def stream_lines(api: Any, path: str, query: dict[str, str]) -> AsyncIterator[str]:
    """A streamed GET (a followed log), line by line as the server writes them; :class:`KubeError` on a
    refusal.  No total timeout: a followed stream lasts as long as its container runs."""
    try:
        method, url, hdrs, data, post = await api.param_serialize(
            "GET",
            path,
            query_params=list(query.items()),
            header_params={"Accept": "*/*"},
            auth_settings=["BearerToken"],
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        resp = await api.call_api(
            method, url, hdrs, data, post, _request_timeout=timeout, _preload_content=False
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise KubeError(0, "Unreachable", f"{type(exc).__name__}: {exc}") from None
    if resp.status >= 400:
        raw = await resp.read()
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {}
        raise KubeError(resp.status, str(doc.get("reason") or ""), str(doc.get("message") or raw[:200]))
    try:
        async for line in resp.response.content:
            yield line.decode(errors="replace").rstrip("\n")
    except (aiohttp.ClientError, OSError) as exc:
        raise KubeError(0, "Unreachable", f"the stream broke: {type(exc).__name__}: {exc}") from None
    finally:
        resp.response.release()
