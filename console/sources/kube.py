"""Kubernetes watches over ``kubernetes.aio``: list, then watch from the list's resourceVersion.

Per resource: reconnect with exponential backoff (0.5 s … 30 s) when the stream breaks, re-watch from the
last seen resourceVersion (bookmarks keep it fresh), and relist on 410 Gone.  A 403 marks the source
``forbidden`` (the ``deployer`` context may not list nodes) and is retried slowly; other kinds go on.

Bodies are parsed with orjson: at 200 pod updates a second the parse is the source's main cost, and
orjson shares map keys across documents where ``json`` gives every watch event its own (a pod's hundred
keys, re-allocated once per update, doubled the store's memory at 10,000 pods).  Objects are trimmed at
the door (``trim``, as client-go's informers' transform functions do): what the
API server keeps for its own bookkeeping and the console never reads — ``managedFields``, kubectl's
last-applied annotation, a pod's service-account token volume and its mounts — would otherwise be half
of every stored pod; what is left has its short strings interned.  A detail screen reads its object from
the API, whole.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

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
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
TOKEN_VOLUME = "kube-api-access-"  # the projected volume the ServiceAccount admission adds to every pod
WATCH_TIMEOUT_S = 300
PAGE = 500  # objects per list page: client-go's default page size
INTERN_MAX = 40  # longer strings (messages, annotations) rarely repeat
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
        """``params`` in the API's own names (``resourceVersion``, ``continue``, …)."""
        if w.field_selector:
            params["fieldSelector"] = w.field_selector
        query = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()]
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
                listed = await self._list(w, lister)
                if listed is None:
                    self.store.set_source(source, SourceState.FORBIDDEN, f"not allowed to list {w.kind}")
                    self._answered(w.kind)
                    self._state()
                    await asyncio.sleep(60)
                    continue
                items, rv = listed
                self.store.replace(w.kind, items)
                self.store.set_source(source, SourceState.OK)
                self._answered(w.kind)
                self._state()
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

    async def _list(
        self, w: Watched, lister: Callable[..., Awaitable[Any]]
    ) -> tuple[list[dict[str, Any]], str] | None:
        """Every object of a kind, trimmed, and the list's resourceVersion; None when forbidden.

        Read in pages of ``PAGE`` as client-go's reflector does: a page is parsed and trimmed before the
        next is read, so 10,000 pods never sit in memory whole and untrimmed at once.  A continue token
        the server no longer honours (410 Expired, its revision compacted) restarts the list unpaged.
        """
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": PAGE}
        while True:
            resp = await lister(**params)
            if resp.status == 403:
                return None
            if resp.status == 410 and "continue" in params:
                items, params = [], {}
                continue
            if resp.status != 200:
                raise ConnectionError(f"list {w.kind}: HTTP {resp.status}")
            data = orjson.loads(await resp.read())
            items.extend(trim(o) for o in data.get("items") or [])
            token = (data.get("metadata") or {}).get("continue")
            if not token or "limit" not in params:
                return items, str(data["metadata"]["resourceVersion"])
            params = {"limit": PAGE, "continue": token}

    async def _watch(self, w: Watched, lister: Callable[..., Awaitable[Any]], rv: str, source: str) -> str:
        """Watch until a 410 asks for a relist; re-watch from the last version when a stream just ends."""
        while True:
            resp = await lister(
                watch=True, resourceVersion=rv, allowWatchBookmarks=True, timeoutSeconds=WATCH_TIMEOUT_S
            )
            if resp.status != 200:
                raise ConnectionError(f"watch {w.kind}: HTTP {resp.status}")
            async for line in resp.content:
                if not line.strip():
                    continue
                event = orjson.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        return rv  # too old: the caller relists
                    raise ConnectionError(obj.get("message", "watch error"))
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                if event["type"] != "BOOKMARK":
                    self.store.apply(w.kind, event["type"], trim(obj))
            self.store.set_source(source, SourceState.OK)


def _interned(value: Any) -> Any:
    """``value`` with its short strings interned, in place: a cluster's objects repeat the same few
    hundred values ("True", "Running", node and image names), which each event would otherwise hold
    anew."""
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= INTERN_MAX else value
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (str, dict, list)):
                value[k] = _interned(v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, (str, dict, list)):
                value[i] = _interned(v)
    return value


def trim(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without the server's bookkeeping the console never reads, its short strings interned
    (changed in place, returned)."""
    meta = obj.get("metadata") or {}
    meta.pop("managedFields", None)
    notes = meta.get("annotations")
    if notes:
        notes.pop(LAST_APPLIED, None)
    spec = obj.get("spec")
    volumes = spec.get("volumes") if isinstance(spec, dict) else None
    if spec and volumes:
        tokens = {v.get("name") for v in volumes if str(v.get("name", "")).startswith(TOKEN_VOLUME)}
        if tokens:
            spec["volumes"] = [v for v in volumes if v.get("name") not in tokens]
            for c in (*(spec.get("initContainers") or ()), *(spec.get("containers") or ())):
                if c.get("volumeMounts"):
                    c["volumeMounts"] = [m for m in c["volumeMounts"] if m.get("name") not in tokens]
    _interned(obj)
    return obj


def _short(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "API server unreachable"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
