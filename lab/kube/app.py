"""The Kubernetes API twin's HTTP face: discovery, CRUD, list/watch, patch, subresources, RBAC.

Request flow, as kube-apiserver: authenticate (bearer token, 401) -> resolve the path to a resource ->
authorize with RBAC (403 with a ``Status`` naming user, verb, resource and namespace) -> admit/validate
(schemas, 422) -> store.  Watches stream ``{"type", "object"}`` lines (tables when asked for, as
``kubectl get -w`` does), replay from a ``resourceVersion``, send bookmarks, honour ``timeoutSeconds``,
and report a too-old version as an in-stream 410 ``ERROR`` event.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import copy
import json
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import web

from lab.faults import Faults
from lab.kube import defaults, tables
from lab.kube.aggregator import Aggregator
from lab.kube.apply import FieldManager
from lab.kube.errors import KubeError, bad_request, conflict, forbidden, not_found, unauthorized
from lab.kube.exec import PodExec
from lab.kube.logs import PodLogs
from lab.kube.metrics import Metrics
from lab.kube.metrics import not_found as metrics_not_found
from lab.kube.patch import APPLY, apply_patch
from lab.kube.rbac import Authorizer, User
from lab.kube.resources import METRICS_GROUP, VIRTUAL, Registry, Resource, crd_resource
from lab.kube.schema import DEF_PREFIX, Field, root
from lab.kube.store import Store, Watcher, WatchEvent, now_iso
from lab.kube.validation import validate
from lab.kube.wire import encode, respond
from lab.labels import SelectorError, parse_selector

log = logging.getLogger("lab.kube")

K8S_VERSION = {
    "major": "1",
    "minor": "34",
    "gitVersion": "v1.34.4+k3s1",
    "gitCommit": "lab",
    "gitTreeState": "clean",
    "buildDate": "2026-02-12T00:00:00Z",
    "goVersion": "go1.24.11",
    "compiler": "gc",
    "platform": "linux/arm64",
}

# Field selectors the real server accepts, per resource (plus metadata.name/namespace everywhere).
FIELD_LABELS: dict[str, set[str]] = {
    "pods": {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "events": {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
    "nodes": {"spec.unschedulable"},
    "secrets": {"type"},
    "namespaces": {"status.phase"},
    "replicasets": {"status.replicas"},
    "jobs": {"status.successful"},
}


def _list_key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return str(meta.get("namespace") or ""), str(meta["name"])


def _encode_continue(last: tuple[str, str], rv: int) -> str:
    """A continue token as kube-apiserver makes one: unpadded URL-safe base64 of its JSON, the key to
    start after (``\\x00`` appended: the next key in etcd's order) and the snapshot's revision."""
    start = "/".join(p for p in last if p) + "\x00"
    token = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def _decode_continue(value: str) -> tuple[tuple[str, str], int]:
    """The key a page starts after and the token's revision; 400 for what the server cannot decode."""
    try:
        token = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        if token.get("v") != "meta.k8s.io/v1":
            raise ValueError("continue key is not valid: unrecognized encoded version")
        rv, start = int(token["rv"]), str(token["start"]).removesuffix("\x00")
        if rv <= 0:
            raise ValueError("continue key is not valid: incorrect encoded start resourceVersion")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        why = str(exc) if str(exc).startswith("continue") else "continue key is not valid"
        raise bad_request(why) from None
    ns, _, name = start.rpartition("/")
    return (ns, name), rv


@dataclass
class KubeStats:
    requests: int = 0
    watches_open: int = 0
    by_verb: dict[str, int] = field(default_factory=dict)


class _YamlLoader(yaml.SafeLoader):
    """YAML as the API server reads it (sigs.k8s.io/yaml: YAML to JSON): a date stays the string it is."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(raw: bytes) -> Any:
    return yaml.load(raw, Loader=_YamlLoader)  # a SafeLoader, without timestamps


def _patch_options_invalid(field_name: str, reason: str, what: str) -> KubeError:
    """PatchOptions validation (422), as ``ValidatePatchOptions`` words it."""
    return KubeError(
        422,
        "Invalid",
        f'PatchOptions.meta.k8s.io "" is invalid: {field_name}: {what}',
        {
            "group": "meta.k8s.io",
            "kind": "PatchOptions",
            "causes": [{"reason": reason, "message": what, "field": field_name}],
        },
    )


def _field_predicate(plural: str, selector: str) -> Callable[[dict[str, Any]], bool]:
    checks = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value, negate = *term.split("!=", 1), True
        elif "==" in term:
            key, value, negate = *term.split("==", 1), False
        elif "=" in term:
            key, value, negate = *term.split("=", 1), False
        else:
            raise bad_request(f'invalid field selector: "{term}"')
        key = key.strip()
        if key not in {"metadata.name", "metadata.namespace"} | FIELD_LABELS.get(plural, set()):
            raise bad_request(f"field label not supported: {key}")
        checks.append((key.split("."), value.strip(), negate))

    def pred(obj: dict[str, Any]) -> bool:
        for path, value, negate in checks:
            cur: Any = obj
            for part in path:
                cur = cur.get(part) if isinstance(cur, dict) else None
            text = "" if cur is None else (str(cur).lower() if isinstance(cur, bool) else str(cur))
            if (text == value) == negate:
                return False
        return True

    return pred


class KubeApi:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        tokens: dict[str, User],
        speed: float = 1.0,
        server_address: str = "127.0.0.1:6443",
    ) -> None:
        self.store = store
        self.registry = registry
        self.tokens = tokens
        self.speed = speed
        self.server_address = server_address
        self.authz = Authorizer(store, registry)
        self.faults = Faults()
        self.version = dict(K8S_VERSION)  # the server's K3s version (an upgrade changes it)
        self.down_until = 0.0  # the server's k3s restarting (monotonic): connections are closed unanswered
        self.stats = KubeStats()
        self.logs = PodLogs()
        self.execs = PodExec()
        self.subresource_hooks: dict[str, Callable[..., Any]] = {}
        self.aggregator: Aggregator | None = None  # the APIServices (lab/kube/aggregator.py)
        self.metrics: Metrics | None = None  # metrics.k8s.io, served while its APIService is available
        self.admission: list[Callable[[Resource, str, dict[str, Any], dict[str, Any] | None], None]] = []
        store.listeners.append(self._crd_listener)
        store.listeners.append(self._pod_gone)
        self.app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024**2)
        r = self.app.router
        r.add_get("/version", self._version)
        r.add_get("/version/", self._version)
        for probe in ("/healthz", "/readyz", "/livez"):
            r.add_get(probe, self._ok)
        r.add_get("/api", self._api_versions)
        r.add_get("/apis", self._api_groups)
        r.add_get("/openapi/v2", self._openapi_v2)
        r.add_get("/openapi/v3", self._openapi_v3)
        r.add_get("/openapi/v3/{tail:.*}", self._openapi_v3_gv)
        r.add_route("*", "/api/{tail:.*}", self._dispatch)
        r.add_route("*", "/apis/{tail:.*}", self._dispatch)

    def restart(self, seconds: float) -> None:
        """The server's k3s restarts: every watch ends and for ``seconds`` no request is answered."""
        self.down_until = time.monotonic() + seconds
        self.store.drop_watches()

    def set_version(self, git_version: str) -> None:
        major, minor = git_version.lstrip("v").split(".")[:2]
        self.version.update(gitVersion=git_version, major=major, minor=minor)

    # ---- plumbing ------------------------------------------------------------------------------------

    def _crd_listener(self, res: Resource, type_: str, obj: dict[str, Any]) -> None:
        if res.plural != "customresourcedefinitions":
            return
        new = crd_resource(obj)
        if type_ == "DELETED":
            self.registry.remove(new)
        else:
            self.registry.add(new)

    def user(self, request: web.Request) -> User:
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else ""
        user = self.tokens.get(token)
        if user is None:
            raise unauthorized()
        return self._impersonated(user, request)

    def _impersonated(self, user: User, request: web.Request) -> User:
        """``Impersonate-User``/``-Group`` (``kubectl --as``, ``--as-group``), as the real server allows it:
        only to a user holding the ``impersonate`` verb on ``users`` (``serviceaccounts`` in the account's
        namespace for ``system:serviceaccount:NS:NAME``) and on ``groups`` for each group asked."""
        from lab.kube.rbac import service_account_user

        target = request.headers.get("Impersonate-User")
        groups = tuple(request.headers.getall("Impersonate-Group", []))
        if target is None:
            if groups:
                raise KubeError(
                    500,
                    "InternalError",
                    f"Internal error occurred: requested {list(groups)} without impersonating a user",
                )
            return user
        if target.startswith("system:serviceaccount:") and target.count(":") == 3:
            _, _, ns, name = target.split(":")
            if not self.authz.allowed(user, "impersonate", "", "serviceaccounts", ns, name):
                raise forbidden(user.name, "impersonate", "serviceaccounts", "", ns, name)
            as_user = service_account_user(ns, name)
        else:
            if not self.authz.allowed(user, "impersonate", "", "users", None, target):
                raise forbidden(user.name, "impersonate", "users", "", None, target)
            as_user = User(target, ("system:authenticated",))
        for g in groups:
            if not self.authz.allowed(user, "impersonate", "", "groups", None, g):
                raise forbidden(user.name, "impersonate", "groups", "", None, g)
        return User(as_user.name, (*groups, *as_user.groups)) if groups else as_user

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.stats.requests += 1
        now = time.monotonic()
        if now < self.down_until:  # k3s restarting: nothing listens, so nothing answers
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)  # never sent: the connection is gone
        try:
            if request.path not in ("/healthz", "/readyz", "/livez", "/version"):
                request["user"] = self.user(request)
            if now < self.faults.latency_until:
                await asyncio.sleep(self.faults.latency_s)
            if now < self.faults.errors_until:
                raise KubeError(500, "InternalError", "Internal error occurred: lab fault injected")
            if now < self.faults.throttle_until:
                raise KubeError(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                    {"retryAfterSeconds": 1},
                    headers={"Retry-After": "1"},
                )
            resp: web.StreamResponse = await handler(request)
            return resp
        except KubeError as exc:
            return respond(exc.status(), status=exc.code, headers=exc.headers)

    async def _ok(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _version(self, _: web.Request) -> web.Response:
        return respond(self.version)

    async def _api_versions(self, _: web.Request) -> web.Response:
        return respond(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address}
                ],
            }
        )

    def _group(self, name: str, versions: list[str]) -> dict[str, Any]:
        gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}

    def _registered(self, group: str, version: str) -> bool:
        """An aggregated group exists only while its APIService does (metrics.k8s.io)."""
        if group != METRICS_GROUP:
            return True
        return (
            self.aggregator is not None
            and self.metrics is not None
            and self.aggregator.registered(group, version)
        )

    async def _api_groups(self, _: web.Request) -> web.Response:
        groups = [
            self._group(g, vs)
            for g, vs in sorted(self.registry.groups().items())
            if all(self._registered(g, v) for v in vs)
        ]
        return respond({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources = [e for r in self.registry.in_group_version(group, version) for e in r.discovery()]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    async def _openapi_v2(self, _: web.Request) -> web.Response:
        raise KubeError(404, "NotFound", "the server could not find the requested resource")

    async def _openapi_v3(self, _: web.Request) -> web.Response:
        paths = {f"api/{'v1'}": {"serverRelativeURL": "/openapi/v3/api/v1"}}
        for group, versions in self.registry.groups().items():
            for v in versions:
                paths[f"apis/{group}/{v}"] = {"serverRelativeURL": f"/openapi/v3/apis/{group}/{v}"}
        return respond({"paths": paths})

    async def _openapi_v3_gv(self, request: web.Request) -> web.Response:
        from lab.kube.openapi import group_version_document

        doc = group_version_document(self.registry, request.match_info["tail"])
        if doc is None:
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        return respond(doc)

    # ---- routing --------------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts[0] == "api":
            group, rest = "", parts[1:]
            if not rest:
                return await self._api_versions(request)
            version, rest = rest[0], rest[1:]
        else:
            rest = parts[1:]
            if not rest:
                return await self._api_groups(request)
            if len(rest) == 1:
                versions = self.registry.groups().get(rest[0])
                if not versions or not all(self._registered(rest[0], v) for v in versions):
                    raise KubeError(404, "NotFound", "the server could not find the requested resource")
                return respond({"kind": "APIGroup", "apiVersion": "v1", **self._group(rest[0], versions)})
            group, version, rest = rest[0], rest[1], rest[2:]
            if not self._registered(group, version):
                raise KubeError(404, "NotFound", "the server could not find the requested resource")
            if group == METRICS_GROUP and not (self.aggregator and self.aggregator.available(group, version)):
                # the aggregator's proxy, its backend down: plain text, not a Status
                return web.Response(
                    status=503, text="service unavailable\n", headers={"X-Content-Type-Options": "nosniff"}
                )
        if not rest:
            if request.method != "GET" or not self.registry.in_group_version(group, version):
                raise KubeError(404, "NotFound", "the server could not find the requested resource")
            return respond(self._resource_list(group, version))
        namespace: str | None = None
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else ""), (rest[2] if len(rest) > 2 else "")
        res = self.registry.get(group, version, plural)
        if res is None or len(rest) > 3:
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        if sub and sub not in res.subresources:
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        if res.namespaced and namespace is None and name:
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        return await self._handle(request, res, namespace, name, sub)

    def _verb(self, request: web.Request, name: str) -> str:
        q = request.query
        method = request.method
        if method == "GET":
            if q.get("watch") in ("true", "1"):
                return "watch"
            return "get" if name else "list"
        return {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }.get(method, "")

    async def _handle(
        self, request: web.Request, res: Resource, namespace: str | None, name: str, sub: str
    ) -> web.StreamResponse:
        verb = self._verb(request, name)
        if not verb:
            raise KubeError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if not sub and verb not in res.verbs:
            raise KubeError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if sub == "log":
            verb = "get"
        if sub == "exec":
            verb = "create"  # a websocket upgrade (GET) is authorised as create, as since Kubernetes 1.31
        user: User = request["user"]
        authz_sub = f"{res.plural}/{sub}" if sub else res.plural
        if res.plural not in VIRTUAL and not self.authz.allowed(
            user, verb, res.group, authz_sub, namespace, name
        ):
            raise forbidden(user.name, verb, res.plural, res.group, namespace, name, sub)
        self.stats.by_verb[verb] = self.stats.by_verb.get(verb, 0) + 1
        if res.plural in VIRTUAL:
            return respond(self._review(res, user, await self._json_body(request), namespace), status=201)
        if res.group == METRICS_GROUP:
            return self._metrics(request, res, namespace, name, verb)
        creates = verb == "create" or (verb == "patch" and request.content_type == APPLY)  # an apply may
        if namespace is not None and res.namespaced and creates and res.plural != "namespaces":
            ns_res = self.registry.get("", "v1", "namespaces")
            assert ns_res is not None
            if self.store.find(ns_res, None, namespace) is None:
                raise not_found("namespaces", "", namespace)
        if sub == "log":
            return await self._log(request, res, namespace, name)
        if sub == "exec":
            resp: web.StreamResponse = await self.execs.serve(request, self.store.get(res, namespace, name))
            return resp
        if sub == "eviction":
            hook = self.subresource_hooks["eviction"]
            body = await self._json_body(request)
            self.store.get(res, namespace, name)
            status = await hook(namespace, name, body)
            return respond(status, status=201)
        if sub == "scale":
            return await self._scale(request, res, namespace, name)
        if sub == "binding":
            return await self._bind(request, res, namespace, name)
        if verb == "watch":
            return await self._watch(request, res, namespace, name)
        if verb == "list":
            return self._list(request, res, namespace)
        if verb == "get":
            return self._respond(request, res, self.store.get(res, namespace, name))
        if verb == "create":
            return await self._create(request, res, namespace)
        if verb == "patch" and request.content_type == APPLY:
            return await self._apply(request, res, namespace, name, sub)
        if verb in ("update", "patch"):
            return await self._update(request, res, namespace, name, sub, verb)
        if verb == "delete":
            opts = await self._delete_options(request)
            obj = self.store.delete(
                res,
                namespace,
                name,
                grace=opts.get("gracePeriodSeconds"),
                propagation=opts.get("propagationPolicy") or "Background",
                precondition_uid=(opts.get("preconditions") or {}).get("uid"),
                precondition_rv=(opts.get("preconditions") or {}).get("resourceVersion"),
            )
            return respond(obj)
        if verb == "deletecollection":
            opts = await self._delete_options(request)
            for obj in self._select(request, res, namespace):
                with contextlib.suppress(KubeError):
                    self.store.delete(
                        res,
                        obj["metadata"].get("namespace"),
                        obj["metadata"]["name"],
                        grace=opts.get("gracePeriodSeconds"),
                    )
            return respond({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
        raise KubeError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    # ---- writes ---------------------------------------------------------------------------------------
    # Every write: decode -> default -> (field manager) -> validate -> admit -> store, as kube-apiserver.

    @staticmethod
    def _manager(request: web.Request, apply: bool = False) -> str:
        """The field manager: the ``fieldManager`` parameter (required for an apply), or the user agent's
        first word (``kubectl/v1.32…`` -> ``kubectl``)."""
        manager = request.query.get("fieldManager", "")
        if len(manager.encode()) > 128:
            raise _patch_options_invalid(
                "fieldManager", "FieldValueTooLong", "Too long: may not be more than 128 bytes"
            )
        if apply and not manager:
            raise _patch_options_invalid(
                "fieldManager", "FieldValueRequired", "Required value: is required for apply patch"
            )
        return manager or request.headers.get("User-Agent", "").split("/")[0][:128] or "unknown"

    @staticmethod
    def _dry_run(request: web.Request) -> bool:
        values = request.query.getall("dryRun", [])
        if any(v != "All" for v in values):
            raise KubeError(
                400, "BadRequest", f'dryRun: Unsupported value: "{values[0]}": supported values: "All"'
            )
        return bool(values)

    async def _create(self, request: web.Request, res: Resource, namespace: str | None) -> web.Response:
        body = await self._json_body(request)
        self._check_kind(res, body)
        manager = self._manager(request)
        if "status" in res.subresources:
            body.pop("status", None)  # PrepareForCreate: a new object's status is the server's to set
        defaults.default(res, body)
        self._validate(request, res, body)
        self._admit(res, "create", body, None)
        await self._service_account(res, body, namespace)
        FieldManager(res).update(None, body, manager)
        obj = self.store.create(res, body, namespace, dry_run=self._dry_run(request))
        return respond(obj, status=201)

    async def _update(
        self, request: web.Request, res: Resource, namespace: str | None, name: str, sub: str, verb: str
    ) -> web.Response:
        current = self.store.get(res, namespace, name)
        manager = self._manager(request)
        if verb == "update":
            new = await self._json_body(request)
            self._check_kind(res, new)
            sent = (new.get("metadata") or {}).get("name")
            if sent != name:
                raise bad_request(
                    f"the name of the object ({sent}) does not match the name on the URL ({name})"
                )
        else:
            if "force" in request.query:
                raise _patch_options_invalid(
                    "force", "FieldValueForbidden", "Forbidden: may not be specified for non-apply patch"
                )
            raw = await request.read()
            try:
                patch = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise bad_request(f"error decoding patch: {exc.msg}") from None
            new = apply_patch(copy.deepcopy(current), patch, request.content_type, root(res), res.custom)
            new.setdefault("metadata", {})
            if "resourceVersion" not in (patch.get("metadata") or {} if isinstance(patch, dict) else {}):
                new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if res.namespaced:
            new.setdefault("metadata", {})["namespace"] = namespace
        if not sub:
            defaults.default(res, new)
        self._validate(request, res, new)
        self._admit(res, verb, new, current)
        FieldManager(res).update(current, new, manager, sub)
        return respond(self.store.update(res, new, sub or None, dry_run=self._dry_run(request)))

    async def _apply(
        self, request: web.Request, res: Resource, namespace: str | None, name: str, sub: str
    ) -> web.Response:
        """Server-side apply (lab/kube/apply.py): create the object if it is missing (201), else merge
        the configuration into it with field ownership (200, or 409 naming the conflicts)."""
        manager = self._manager(request, apply=True)
        force = request.query.get("force", "false") == "true"
        dry_run = self._dry_run(request)
        config = self._apply_config(await request.read(), res, namespace, name)
        live = self.store.find(res, namespace, name)
        fm = FieldManager(res)
        if live is None:
            if sub:
                raise not_found(res.plural, res.group, name)
            obj = fm.apply(None, config, manager, force)
            if "status" in res.subresources:
                obj.pop("status", None)
            defaults.default(res, obj)
            self._validate(request, res, obj)
            self._admit(res, "create", obj, None)
            await self._service_account(res, obj, namespace)
            return respond(self.store.create(res, obj, namespace, dry_run=dry_run), status=201)
        sent_rv = (config.get("metadata") or {}).get("resourceVersion")
        if sent_rv and sent_rv != live["metadata"]["resourceVersion"]:
            raise conflict(res.plural, res.group, name)
        new = fm.apply(copy.deepcopy(live), config, manager, force, sub)
        new["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        if not sub:
            defaults.default(res, new)
        self._validate(request, res, new)
        self._admit(res, "patch", new, live)
        return respond(self.store.update(res, new, sub or None, dry_run=dry_run))

    def _apply_config(self, raw: bytes, res: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        """An apply body as the server decodes it: a YAML (or JSON) object of this kind and name."""
        try:
            config = load_yaml(raw) if raw.strip() else {}
        except yaml.YAMLError as exc:
            raise bad_request(f"error decoding YAML: error converting YAML to JSON: {exc}") from None
        if not isinstance(config, dict):
            raise bad_request(
                "error decoding YAML: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal "
                f"{'array' if isinstance(config, list) else 'string'} into Go value of type "
                "map[string]interface {}"
            )
        if config.get("apiVersion") != res.group_version or config.get("kind") != res.kind:
            raise bad_request(
                f"invalid object type: {config.get('apiVersion') or '/'}, Kind={config.get('kind') or ''}"
            )
        meta = config.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if meta.get("managedFields") is not None:
            raise bad_request("metadata.managedFields must be nil")
        if meta.get("name") != name:
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        if res.namespaced:
            if meta.get("namespace") not in (None, namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        return config

    async def _service_account(self, res: Resource, pod: dict[str, Any], namespace: str | None) -> None:
        """ServiceAccount admission: a new Pod's account must exist (``default`` is waited for a moment,
        as the real plugin retries while the namespace's controller makes it)."""
        if res.group or res.plural != "pods" or namespace is None:
            return
        spec = pod.get("spec") or {}
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        accounts = self.registry.get("", "v1", "serviceaccounts")
        assert accounts is not None
        for _ in range(20 if account == "default" else 1):
            if self.store.find(accounts, namespace, account) is not None:
                return
            await asyncio.sleep(0.1)
        name = (pod.get("metadata") or {}).get("name") or (pod.get("metadata") or {}).get("generateName", "")
        raise KubeError(
            403,
            "Forbidden",
            f'pods "{name}" is forbidden: error looking up service account {namespace}/{account}: '
            f'serviceaccount "{account}" not found',
            {"name": name, "kind": "pods"},
        )

    # ---- helpers --------------------------------------------------------------------------------------

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if request.content_type == "application/vnd.kubernetes.protobuf":
            from lab.kube.protobuf import decode

            try:
                return decode(raw)
            except (ValueError, IndexError, UnicodeDecodeError, struct.error) as exc:
                raise bad_request(f"error decoding protobuf body: {exc}") from None
        try:
            body = load_yaml(raw) if "yaml" in request.content_type else json.loads(raw) if raw else {}
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise bad_request(f"error decoding request body: {exc}") from None
        if not isinstance(body, dict):
            raise bad_request("the request body must be an object")
        return body

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if request.can_read_body:
            opts = await self._json_body(request)
        q = request.query
        if "gracePeriodSeconds" in q:
            opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if opts.get("orphanDependents") is True:
            opts["propagationPolicy"] = "Orphan"
        return opts

    def _check_kind(self, res: Resource, body: dict[str, Any]) -> None:
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if (kind and kind != res.kind) or (api_version and api_version != res.group_version):
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({res.group_version})"
                if api_version != res.group_version
                else f"kind {kind} does not match {res.kind}"
            )
        body["kind"], body["apiVersion"] = res.kind, res.group_version

    def _validate(self, request: web.Request, res: Resource, obj: dict[str, Any]) -> None:
        strict = request.query.get("fieldValidation") == "Strict"
        problems = validate(obj, res.crd, strict)
        unknown = [(f, m) for f, m in problems if "Additional properties are not allowed" in m]
        if unknown:
            field, message = unknown[0]
            name = message.split("'")[1] if "'" in message else "?"
            path = name if field == "<root>" else f"{field}.{name}"
            raise bad_request(
                f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: '
                f'strict decoding error: unknown field "{path}"'
            )
        if problems:
            raise KubeError(
                422,
                "Invalid",
                f"{res.kind}{'.' + res.group if res.group else ''} "
                f'"{(obj.get("metadata") or {}).get("name", "")}" is invalid: '
                + "; ".join(f"{f}: {m}" for f, m in problems[:3]),
                {
                    "name": (obj.get("metadata") or {}).get("name", ""),
                    "group": res.group,
                    "kind": res.kind,
                    "causes": [
                        {"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in problems
                    ],
                },
            )

    def _admit(self, res: Resource, verb: str, new: dict[str, Any], old: dict[str, Any] | None) -> None:
        for hook in self.admission:
            hook(res, verb, new, old)

    def _select(self, request: web.Request, res: Resource, namespace: str | None) -> list[dict[str, Any]]:
        q = request.query
        items = self.store.list(res, namespace)
        if q.get("labelSelector"):
            try:
                match = parse_selector(q["labelSelector"])
            except SelectorError as exc:
                raise bad_request(f"unable to parse requirement: {exc}") from None
            items = [o for o in items if match(o["metadata"].get("labels") or {})]
        if q.get("fieldSelector"):
            pred = _field_predicate(res.plural, q["fieldSelector"])
            items = [o for o in items if pred(o)]
        return items

    @staticmethod
    def _view(request: web.Request) -> tables.View:
        """What the client asked to see (``Accept``'s ``as=``, ``includeObject``), or 406/400 as the real
        server answers what it cannot produce."""
        include = request.query.get("includeObject")
        if include is not None and include not in tables.INCLUDE:
            raise bad_request(f'unrecognized includeObject value: "{include}"')
        found = tables.view(request.headers.get("Accept", ""), include)
        if found is None:
            raise KubeError(
                406,
                "NotAcceptable",
                "only the following media types are accepted: application/json, application/yaml",
            )
        return found

    def _respond(self, request: web.Request, res: Resource, obj: dict[str, Any]) -> web.Response:
        view = self._view(request)
        return respond(view.one(res, obj), as_yaml=view.yaml)

    def _list(self, request: web.Request, res: Resource, namespace: str | None) -> web.Response:
        items = self._select(request, res, namespace)
        q = request.query
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        if q.get("continue"):
            after, token_rv = _decode_continue(q["continue"])
            if token_rv < self.store.etcd_floor():
                raise KubeError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a "
                    "consistent list result. You can start a new list without the continue parameter.",
                )
            meta["resourceVersion"] = str(token_rv)
            items = items[bisect.bisect_right(items, after, key=_list_key) :]
        limit = int(q.get("limit") or 0)
        page = items[:limit] if limit > 0 else items
        if len(page) < len(items):
            meta["continue"] = _encode_continue(_list_key(page[-1]), int(meta["resourceVersion"]))
            meta["remainingItemCount"] = len(items) - len(page)
        view = self._view(request)
        return respond(view.many(res, page, meta), as_yaml=view.yaml)

    async def _watch(
        self, request: web.Request, res: Resource, namespace: str | None, name: str
    ) -> web.StreamResponse:
        q = request.query
        preds: list[Callable[[dict[str, Any]], bool]] = []
        if q.get("labelSelector"):
            try:
                match = parse_selector(q["labelSelector"])
            except SelectorError as exc:
                raise bad_request(f"unable to parse requirement: {exc}") from None
            preds.append(lambda o: match(o["metadata"].get("labels") or {}))
        if q.get("fieldSelector"):
            preds.append(_field_predicate(res.plural, q["fieldSelector"]))
        if name:
            preds.append(lambda o: o["metadata"]["name"] == name)
        watcher = Watcher(namespace, lambda o: all(p(o) for p in preds))
        rv_param = q.get("resourceVersion", "")
        view = self._view(request)
        timeout = min(float(q.get("timeoutSeconds") or 1800), 1800.0)
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        # Subscribe first, then replay: nothing committed in between can be missed.
        self.store.subscribe(res, watcher)
        initial: list[WatchEvent] = []
        try:
            if rv_param in ("", "0"):
                initial = [
                    WatchEvent(self.store.rv, "ADDED", o)
                    for o in self.store.list(res, namespace)
                    if watcher.predicate(o)
                ]
            else:
                try:
                    since = int(rv_param)
                except ValueError:
                    raise bad_request(f"invalid resourceVersion {rv_param!r}") from None
                initial = [
                    e
                    for e in self.store.replay(res, since)
                    if (namespace is None or e.obj["metadata"].get("namespace") == namespace)
                    and watcher.predicate(e.obj)
                ]
        except KubeError as exc:
            if exc.code != 410:
                self.store.unsubscribe(res, watcher)
                raise
            resp = await self._stream_start(request)
            await self._send(resp, {"type": "ERROR", "object": exc.status()})
            self.store.unsubscribe(res, watcher)
            return resp
        # Drop queued events already covered by the replay.
        last_rv = max([e.rv for e in initial], default=int(rv_param) if rv_param.isdigit() else self.store.rv)
        resp = await self._stream_start(request)
        self.stats.watches_open += 1
        try:
            for e in initial:
                await self._send(resp, self._event(res, e, view))
            deadline = time.monotonic() + timeout
            bookmark_every = max(1.0, 60.0 * self.speed)
            next_bookmark = time.monotonic() + bookmark_every
            while True:
                now = time.monotonic()
                wait = min(deadline, next_bookmark if bookmarks else deadline) - now
                if now >= deadline:
                    if bookmarks:  # as the real server: a last bookmark before the timeout closes the watch
                        await self._send(resp, self._bookmark(res))
                    break
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), timeout=max(0.01, wait))
                except TimeoutError:
                    if bookmarks and time.monotonic() >= next_bookmark:
                        await self._send(resp, self._bookmark(res))
                        next_bookmark = time.monotonic() + bookmark_every
                    continue
                if event is None:  # dropped by a lab fault
                    break
                if event.rv <= last_rv:
                    continue
                last_rv = event.rv
                await self._send(resp, self._event(res, event, view))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.stats.watches_open -= 1
            self.store.unsubscribe(res, watcher)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof()
        return resp

    def _bookmark(self, res: Resource) -> dict[str, Any]:
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": res.kind,
                "apiVersion": res.group_version,
                "metadata": {"resourceVersion": str(self.store.rv)},
            },
        }

    @staticmethod
    def _event(res: Resource, e: WatchEvent, view: tables.View) -> dict[str, Any]:
        return {"type": e.type, "object": view.one(res, e.obj)}

    async def _stream_start(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        )
        await resp.prepare(request)
        return resp

    @staticmethod
    async def _send(resp: web.StreamResponse, payload: dict[str, Any]) -> None:
        await resp.write(encode(payload))

    async def _scale(
        self, request: web.Request, res: Resource, namespace: str | None, name: str
    ) -> web.Response:
        obj = self.store.get(res, namespace, name)
        if request.method in ("PUT", "PATCH"):
            body = (
                await self._json_body(request)
                if request.method == "PUT"
                else apply_patch(
                    self._scale_obj(res, obj),
                    json.loads(await request.read()),
                    request.content_type,
                    Field.of({"$ref": DEF_PREFIX + "io.k8s.api.autoscaling.v1.Scale"}),
                    False,
                )
            )
            replicas = int((body.get("spec") or {}).get("replicas", obj["spec"].get("replicas", 1)))
            new = copy.deepcopy(obj)
            new["spec"]["replicas"] = replicas
            FieldManager(res).update(obj, new, self._manager(request), "scale")
            obj = self.store.update(res, new, dry_run=self._dry_run(request))
        return respond(self._scale_obj(res, obj))

    @staticmethod
    def _scale_obj(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        selector = obj.get("spec", {}).get("selector") or {}
        # a LabelSelector's matchLabels; a ReplicationController's selector is the map itself
        sel = selector.get("matchLabels", {}) if res.kind != "ReplicationController" else selector
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: obj["metadata"][k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in obj["metadata"]
            },
            "spec": {"replicas": obj.get("spec", {}).get("replicas", 1)},
            "status": {
                "replicas": obj.get("status", {}).get("replicas", 0),
                "selector": ",".join(f"{k}={v}" for k, v in sel.items()),
            },
        }

    def _metrics(
        self, request: web.Request, res: Resource, namespace: str | None, name: str, verb: str
    ) -> web.Response:
        """NodeMetrics and PodMetrics as metrics-server answers them: get and list (label selectors),
        no watch; a pod or node without metrics is 404 in its words."""
        assert self.metrics is not None
        if verb not in ("get", "list"):
            raise KubeError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if res.plural == "nodes":
            nodes_res = self.registry.get("", "v1", "nodes")
            assert nodes_res is not None
            nodes = self.store.list(nodes_res)
            if name and not any(n["metadata"]["name"] == name for n in nodes):
                raise KubeError(404, "NotFound", f'node "{name}" not found', {"name": name, "kind": "node"})
            items = self.metrics.node_metrics(nodes)
        else:
            pods_res = self.registry.get("", "v1", "pods")
            assert pods_res is not None
            if name and self.store.find(pods_res, namespace, name) is None:
                raise not_found("pods", "", name)
            items = self.metrics.pod_metrics(namespace)
        if name:
            found = next((i for i in items if i["metadata"]["name"] == name), None)
            if found is None:
                kind = "nodemetrics" if res.plural == "nodes" else "podmetrics"
                raise metrics_not_found(kind, f"{namespace}/{name}" if namespace else name)
            obj = {"kind": res.kind, "apiVersion": res.group_version, **found}
            view = self._view(request)
            return respond(view.one(res, obj), as_yaml=view.yaml)
        if request.query.get("labelSelector"):
            try:
                match = parse_selector(request.query["labelSelector"])
            except SelectorError as exc:
                raise bad_request(f"unable to parse requirement: {exc}") from None
            items = [i for i in items if match(i["metadata"].get("labels") or {})]
        view = self._view(request)
        return respond(view.many(res, items, {}), as_yaml=view.yaml)

    async def _bind(
        self, request: web.Request, res: Resource, namespace: str | None, name: str
    ) -> web.Response:
        """``pods/NAME/binding``: a scheduler's decision; once, onto a node (409 when already bound)."""
        pod = self.store.get(res, namespace, name)
        body = await self._json_body(request)
        node = (body.get("target") or {}).get("name")
        if not node:
            raise bad_request("Binding.target.name: Required value")
        if pod["spec"].get("nodeName"):
            raise KubeError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is already assigned '
                f'to node "{pod["spec"]["nodeName"]}"',
                {"name": name, "kind": "pods/binding"},
            )
        self.store.update(
            res, {**pod, "spec": {**pod["spec"], "nodeName": node}}, subresource="binding", force=True
        )
        return respond(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )

    async def _log(
        self, request: web.Request, res: Resource, namespace: str | None, name: str
    ) -> web.StreamResponse:
        return await self.logs.serve(request, self.store.get(res, namespace, name))

    def log_line(self, namespace: str, pod: str, line: str) -> None:
        """A line on the pod's first container's output (the DocFast twin logs every request it serves)."""
        pods = self.registry.get("", "v1", "pods")
        obj = self.store.find(pods, namespace, pod) if pods is not None else None
        containers = (obj or {}).get("spec", {}).get("containers") or [{"name": ""}]
        self.logs.write(namespace, pod, containers[0]["name"], line)

    def _pod_gone(self, res: Resource, type_: str, obj: dict[str, Any]) -> None:
        if res.plural == "pods" and type_ == "DELETED":
            self.logs.forget(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    def _review(
        self, res: Resource, user: User, body: dict[str, Any], namespace: str | None
    ) -> dict[str, Any]:
        if res.plural == "selfsubjectaccessreviews":
            attrs = (body.get("spec") or {}).get("resourceAttributes") or {}
            resource = attrs.get("resource", "")
            if attrs.get("subresource"):
                resource += "/" + attrs["subresource"]
            allowed = self.authz.allowed(
                user,
                attrs.get("verb", ""),
                attrs.get("group", ""),
                resource,
                attrs.get("namespace") or None,
                attrs.get("name", ""),
            )
            return {
                **body,
                "apiVersion": res.group_version,
                "kind": res.kind,
                "metadata": {"creationTimestamp": None},
                "status": {"allowed": allowed, **({} if allowed else {"reason": ""})},
            }
        if res.plural == "selfsubjectreviews":
            return {
                "kind": res.kind,
                "apiVersion": res.group_version,
                "metadata": {"creationTimestamp": now_iso()},
                "status": {"userInfo": {"username": user.name, "groups": list(user.groups)}},
            }
        ns = (body.get("spec") or {}).get("namespace") or namespace
        rules = self._rules_for(user, ns)
        return {
            **body,
            "apiVersion": res.group_version,
            "kind": res.kind,
            "metadata": {"creationTimestamp": None},
            "status": {"resourceRules": rules, "nonResourceRules": [], "incomplete": False},
        }

    def _rules_for(self, user: User, namespace: str | None) -> list[dict[str, Any]]:
        if "system:masters" in user.groups:
            return [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
        from lab.kube.rbac import _subject_matches

        rules: list[dict[str, Any]] = []
        rbac = "rbac.authorization.k8s.io"
        bindings = self.store.list(self.registry.get(rbac, "v1", "clusterrolebindings"))  # type: ignore[arg-type]
        if namespace:
            bindings += self.store.list(self.registry.get(rbac, "v1", "rolebindings"), namespace)  # type: ignore[arg-type]
        for b in bindings:
            if any(_subject_matches(s, user) for s in b.get("subjects") or []):
                rules += self.authz._rules(b["roleRef"], namespace)
        return rules
