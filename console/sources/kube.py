"""Kubernetes watches over ``kubernetes.aio``: list, then watch from the list's resourceVersion.

Per resource: reconnect with exponential backoff (0.5 s … 30 s) when the stream breaks, re-watch from the
last seen resourceVersion (bookmarks keep it fresh), and relist on 410 Gone.  A 403 marks the source
``forbidden`` (the ``deployer`` context may not list nodes) and is retried slowly; other kinds go on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from kubernetes.aio import client, config
else:  # without the kubernetes packages' eager __init__s: see console/clients/kube_lib.py
    from console.clients.kube_lib import load

    client, config = load()

from console.errors import UsageError
from console.model import SourceState
from console.sources.base import Source
from console.store import ClusterStore

log = logging.getLogger("console.kube")
WATCH_TIMEOUT_S = 300
IN_CLUSTER = "in-cluster"


@dataclass(frozen=True)
class Watched:
    kind: str
    group: str = ""
    version: str = "v1"
    plural: str = ""
    field_selector: str = ""

    @property
    def custom(self) -> bool:
        return bool(self.group) and self.group.endswith(("cnpg.io", "cert-manager.io"))


WATCHED = (
    Watched("nodes", plural="nodes"),
    Watched("pods", plural="pods"),
    Watched("deployments", "apps", "v1", "deployments"),
    Watched("daemonsets", "apps", "v1", "daemonsets"),
    Watched("replicasets", "apps", "v1", "replicasets"),  # release history (console/releases.py)
    Watched("poddisruptionbudgets", "policy", "v1", "poddisruptionbudgets"),
    Watched("networkpolicies", "networking.k8s.io", "v1", "networkpolicies"),
    Watched("clusters", "postgresql.cnpg.io", "v1", "clusters"),
    Watched("poolers", "postgresql.cnpg.io", "v1", "poolers"),
    Watched("backups", "postgresql.cnpg.io", "v1", "backups"),
    Watched("certificates", "cert-manager.io", "v1", "certificates"),
    Watched("events", plural="events"),
    # Node heartbeats (kube-node-lease) change every 10 s per node and say nothing the node watch does not;
    # the leases worth seeing are the locks (the console's own, the operators' leader elections).
    Watched("leases", "coordination.k8s.io", "v1", "leases", "metadata.namespace!=kube-node-lease"),
)


class KubeconfigError(UsageError):
    """The kubeconfig is missing, unreadable, or lacks the context: one sentence naming the file."""


def kubeconfig_paths(kubeconfig: str | None) -> list[Path]:
    """The files the client reads: the config's ``kubeconfig``, else ``$KUBECONFIG`` (a list), else
    ``~/.kube/config`` — as kubectl and the client library look."""
    if kubeconfig:
        return [Path(kubeconfig).expanduser()]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path("~/.kube/config").expanduser()]


async def api_client(kubeconfig: str | None, context: str | None) -> client.ApiClient:
    """A client for ``context`` of the kubeconfig; :class:`KubeconfigError` when that cannot be.

    ``kubeconfig = "in-cluster"``: the pod's own ServiceAccount (the watcher deployed by its exported
    manifests), as ``kubectl`` inside a pod does."""
    if kubeconfig == IN_CLUSTER:
        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except Exception as exc:  # the library's ConfigException: not in a pod
            raise KubeconfigError(f"kubeconfig = {IN_CLUSTER!r}, but this is no pod: {exc}") from None
        return client.ApiClient(cfg)
    paths = kubeconfig_paths(kubeconfig)
    if not any(p.exists() for p in paths):
        where = ", ".join(map(str, paths))
        raise KubeconfigError(
            f"no kubeconfig at {where}: set [kubernetes] kubeconfig in the config (or $KUBECONFIG)"
        )
    cfg = client.Configuration()
    try:
        await config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig or None, context=context or None, client_configuration=cfg
        )
    except Exception as exc:  # the library's ConfigException, a YAML error, an unreadable file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise KubeconfigError(
            f"{', '.join(map(str, paths))}: cannot use context {context!r}: {first}"
        ) from None
    return client.ApiClient(cfg)


def _lister(api: client.ApiClient, w: Watched) -> Callable[..., Awaitable[Any]]:
    """A list/watch call for one resource through the library's own request path (auth, TLS, host).

    The typed API classes would do the same, but importing them costs seconds of model set-up on first
    use; the console needs only raw JSON lines, so it builds the request with ``param_serialize``.
    """
    path = f"/apis/{w.group}/{w.version}/{w.plural}" if w.group else f"/api/{w.version}/{w.plural}"

    async def call(**params: Any) -> Any:
        if w.field_selector:
            params["fieldSelector"] = w.field_selector
        query = [
            (
                (
                    "allowWatchBookmarks"
                    if k == "allow_watch_bookmarks"
                    else "resourceVersion"
                    if k == "resource_version"
                    else "timeoutSeconds"
                    if k == "timeout_seconds"
                    else k
                ),
                str(v).lower() if isinstance(v, bool) else str(v),
            )
            for k, v in params.items()
        ]
        method, url, headers, body, post = await api.param_serialize(
            "GET",
            path,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        resp = await api.call_api(method, url, headers, body, post, _preload_content=False)
        return _Response(resp)

    return call


async def get_json(api: Any, path: str) -> dict[str, Any] | None:
    """GET one object; None when it is missing, forbidden or the server cannot be reached."""
    try:
        method, url, headers, body, post = await api.param_serialize(
            "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
        )
        resp = await api.call_api(method, url, headers, body, post, _preload_content=False)
        if resp.status != 200:
            return None
        data: dict[str, Any] = json.loads(await resp.read())
        return data
    except (aiohttp.ClientError, OSError, ValueError):
        return None


async def weak_db_credentials(api: Any, config: Any) -> bool | None:
    """Is the app's database password guessable?  None when the credentials may not read the secret."""
    import base64

    from console.snapshot import WEAK_PASSWORDS

    db = config.database
    data = await get_json(api, f"/api/v1/namespaces/{db.namespace}/secrets/{db.credentials_secret}")
    if data is None:
        return None
    fields = data.get("data") or {}
    user = base64.b64decode(fields.get("username", "")).decode(errors="replace")
    password = base64.b64decode(fields.get("password", "")).decode(errors="replace")
    return password == user or password in WEAK_PASSWORDS or len(password) < 12


class _Response:
    """``status``, ``read()`` and the streaming ``content`` of a RESTResponse."""

    def __init__(self, resp: Any) -> None:
        self.status = int(resp.status)
        self._resp = resp
        self.content = resp.response.content

    async def read(self) -> bytes:
        data: bytes = await self._resp.read()
        return data


class KubeSource(Source):
    """Keeps the store's Kubernetes kinds current; ``synced`` is set once every kind answered once.
    Driven by watches, not a clock: it needs no refresh."""

    name = "kubernetes"

    def __init__(
        self, store: ClusterStore, api: client.ApiClient, kinds: tuple[Watched, ...] = WATCHED
    ) -> None:
        self.store = store
        self.api = api
        self.kinds = kinds
        self.answered: set[str] = set()
        self.synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.store.set_source(self.name, SourceState.PENDING)
        for w in self.kinds:
            self._tasks.append(asyncio.ensure_future(self._run(w)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _answered(self, kind: str) -> None:
        self.answered.add(kind)
        if len(self.answered) == len(self.kinds):
            self.synced.set()

    def _state(self) -> None:
        states = [self.store.sources.get(f"kube:{w.kind}") for w in self.kinds]
        bad = [s for s in states if s is not None and s.state is not SourceState.OK]
        if not bad:
            self.store.set_source(self.name, SourceState.OK)
        elif all(s.state is SourceState.FORBIDDEN for s in bad):
            self.store.set_source(
                self.name,
                SourceState.OK if len(bad) < len(states) else SourceState.FORBIDDEN,
                f"forbidden: {', '.join(s.name.removeprefix('kube:') for s in bad)}",
            )
        else:
            self.store.set_source(self.name, bad[0].state, bad[0].error)

    async def _run(self, w: Watched) -> None:
        source = f"kube:{w.kind}"
        lister = _lister(self.api, w)
        backoff = 0.5
        while True:
            try:
                resp = await lister()
                if resp.status == 403:
                    self.store.set_source(source, SourceState.FORBIDDEN, f"not allowed to list {w.kind}")
                    self._answered(w.kind)
                    self._state()
                    await asyncio.sleep(60)
                    continue
                if resp.status != 200:
                    raise ConnectionError(f"list {w.kind}: HTTP {resp.status}")
                data = json.loads(await resp.read())
                self.store.replace(w.kind, data.get("items") or [])
                self.store.set_source(source, SourceState.OK)
                self._answered(w.kind)
                self._state()
                rv = str(data["metadata"]["resourceVersion"])
                backoff = 0.5
                rv = await self._watch(w, lister, rv, source)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: mark stale, back off, relist
                self.store.set_source(source, SourceState.UNREACHABLE, _short(exc))
                self._answered(w.kind)
                self._state()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _watch(self, w: Watched, lister: Callable[..., Awaitable[Any]], rv: str, source: str) -> str:
        """Watch until a 410 asks for a relist; re-watch from the last version when a stream just ends."""
        while True:
            resp = await lister(
                watch=True, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=WATCH_TIMEOUT_S
            )
            if resp.status != 200:
                raise ConnectionError(f"watch {w.kind}: HTTP {resp.status}")
            async for line in resp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        return rv  # too old: the caller relists
                    raise ConnectionError(obj.get("message", "watch error"))
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                if event["type"] != "BOOKMARK":
                    self.store.apply(w.kind, event["type"], obj)
            self.store.set_source(source, SourceState.OK)


def _short(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "API server unreachable"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
