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
import contextlib
import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import web

from lab.faults import Faults
from lab.kube import tables
from lab.kube.errors import KubeError, bad_request, forbidden, not_found, unauthorized
from lab.kube.exec import PodExec
from lab.kube.logs import PodLogs
from lab.kube.patch import apply_patch
from lab.kube.rbac import Authorizer, User
from lab.kube.resources import VIRTUAL, Registry, Resource, crd_resource
from lab.kube.store import Store, Watcher, WatchEvent
from lab.kube.validation import validate
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


@dataclass
class KubeStats:
    requests: int = 0
    watches_open: int = 0
    by_verb: dict[str, int] = field(default_factory=dict)


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
            return web.json_response(exc.status(), status=exc.code, headers=exc.headers)

    async def _ok(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _version(self, _: web.Request) -> web.Response:
        return web.json_response(self.version)

    async def _api_versions(self, _: web.Request) -> web.Response:
        return web.json_response(
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

    async def _api_groups(self, _: web.Request) -> web.Response:
        groups = [self._group(g, vs) for g, vs in sorted(self.registry.groups().items())]
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

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
        return web.json_response({"paths": paths})

    async def _openapi_v3_gv(self, request: web.Request) -> web.Response:
        from lab.kube.openapi import group_version_document

        doc = group_version_document(self.registry, request.match_info["tail"])
        if doc is None:
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        return web.json_response(doc)

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
                if not versions:
                    raise KubeError(404, "NotFound", "the server could not find the requested resource")
                return web.json_response(
                    {"kind": "APIGroup", "apiVersion": "v1", **self._group(rest[0], versions)}
                )
            group, version, rest = rest[0], rest[1], rest[2:]
        if not rest:
            if request.method != "GET" or not self.registry.in_group_version(group, version):
                raise KubeError(404, "NotFound", "the server could not find the requested resource")
            return web.json_response(self._resource_list(group, version))
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
            return web.json_response(
                self._review(res, user, await self._json_body(request), namespace), status=201
            )
        if namespace is not None and res.namespaced and verb == "create" and res.plural != "namespaces":
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
            return web.json_response(status, status=201)
        if sub == "scale":
            return await self._scale(request, res, namespace, name)
        if verb == "watch":
            return await self._watch(request, res, namespace, name)
        if verb == "list":
            return self._list(request, res, namespace)
        if verb == "get":
            return self._respond(request, res, self.store.get(res, namespace, name))
        if verb == "create":
            body = await self._json_body(request)
            self._check_kind(res, body)
            self._validate(request, res, body)
            self._admit(res, "create", body, None)
            if request.query.get("dryRun") == "All":
                return web.json_response(body, status=201)
            obj = self.store.create(res, body, namespace)
            return web.json_response(obj, status=201)
        if verb in ("update", "patch"):
            current = self.store.get(res, namespace, name)
            if verb == "update":
                body = await self._json_body(request)
                self._check_kind(res, body)
                if (body.get("metadata") or {}).get("name") != name:
                    raise bad_request("the name of the object does not match the name on the URL")
                new = body
            else:
                raw = await request.read()
                try:
                    patch = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise bad_request(f"error decoding patch: {exc.msg}") from None
                new = apply_patch(copy.deepcopy(current), patch, request.content_type, res.custom)
                new.setdefault("metadata", {})
                if "resourceVersion" not in (patch.get("metadata") or {} if isinstance(patch, dict) else {}):
                    new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            if res.namespaced:
                new.setdefault("metadata", {})["namespace"] = namespace
            self._validate(request, res, new)
            self._admit(res, verb, new, current)
            if request.query.get("dryRun") == "All":
                return web.json_response(new)
            return web.json_response(self.store.update(res, new, sub or None))
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
            return web.json_response(obj)
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
            return web.json_response(
                {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
            )
        raise KubeError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    # ---- helpers --------------------------------------------------------------------------------------

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if request.content_type == "application/vnd.kubernetes.protobuf":
            from lab.kube.protobuf import decode

            try:
                decoded = decode(raw)
                if decoded.get("kind") == "Job" and decoded.get("spec") is None:
                    decoded["spec"] = self._job_spec_from_cronjob(decoded["metadata"])
                return decoded
            except (ValueError, IndexError) as exc:
                raise KubeError(415, "UnsupportedMediaType", str(exc)) from None
        try:
            body = yaml.safe_load(raw) if "yaml" in request.content_type else json.loads(raw) if raw else {}
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise bad_request(f"error decoding request body: {exc}") from None
        if not isinstance(body, dict):
            raise bad_request("the request body must be an object")
        return body

    def _job_spec_from_cronjob(self, meta: dict[str, Any]) -> dict[str, Any]:
        owner = next((r for r in meta.get("ownerReferences", []) if r.get("kind") == "CronJob"), None)
        res = self.registry.get("batch", "v1", "cronjobs")
        if owner is None or res is None:
            raise ValueError("protobuf Jobs are understood only when created from a CronJob")
        cronjob = self.store.get(res, meta.get("namespace"), owner["name"])
        return copy.deepcopy(cronjob["spec"]["jobTemplate"]["spec"])

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

    def _respond(self, request: web.Request, res: Resource, obj: dict[str, Any]) -> web.Response:
        if tables.wants_table(request.headers.get("Accept", "")):
            return web.json_response(
                tables.to_table(res, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]})
            )
        return web.json_response(obj)

    def _list(self, request: web.Request, res: Resource, namespace: str | None) -> web.Response:
        items = self._select(request, res, namespace)
        q = request.query
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        start = 0
        if q.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(q["continue"]))
                start, token_rv = int(token["start"]), int(token["rv"])
            except (ValueError, KeyError, TypeError):
                raise bad_request("invalid continue token") from None
            floor = self.store.compacted.get(self.store.key(res), 0)
            if token_rv < floor:
                raise KubeError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a "
                    "consistent list result. You can start a new list without the continue parameter.",
                )
            meta["resourceVersion"] = str(token_rv)
        limit = int(q.get("limit") or 0)
        if limit > 0:
            page = items[start : start + limit]
            if start + limit < len(items):
                meta["continue"] = base64.urlsafe_b64encode(
                    json.dumps({"start": start + limit, "rv": int(meta["resourceVersion"])}).encode()
                ).decode()
                meta["remainingItemCount"] = len(items) - start - limit
        else:
            page = items[start:]
        if tables.wants_table(request.headers.get("Accept", "")):
            return web.json_response(tables.to_table(res, page, meta))
        return web.json_response(
            {"kind": f"{res.kind}List", "apiVersion": res.group_version, "metadata": meta, "items": page}
        )

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
        as_table = tables.wants_table(request.headers.get("Accept", ""))
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
                await self._send(resp, self._event(res, e, as_table))
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
                await self._send(resp, self._event(res, event, as_table))
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

    def _event(self, res: Resource, e: WatchEvent, as_table: bool) -> dict[str, Any]:
        obj = e.obj
        if as_table:
            obj = tables.to_table(res, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]})
        return {"type": e.type, "object": obj}

    async def _stream_start(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        )
        await resp.prepare(request)
        return resp

    @staticmethod
    async def _send(resp: web.StreamResponse, payload: dict[str, Any]) -> None:
        await resp.write(json.dumps(payload).encode() + b"\n")

    async def _scale(
        self, request: web.Request, res: Resource, namespace: str | None, name: str
    ) -> web.Response:
        obj = self.store.get(res, namespace, name)
        if request.method in ("PUT", "PATCH"):
            body = (
                await self._json_body(request)
                if request.method == "PUT"
                else apply_patch(
                    self._scale_obj(res, obj), json.loads(await request.read()), request.content_type, False
                )
            )
            replicas = int((body.get("spec") or {}).get("replicas", obj["spec"].get("replicas", 1)))
            new = copy.deepcopy(obj)
            new["spec"]["replicas"] = replicas
            obj = self.store.update(res, new)
        return web.json_response(self._scale_obj(res, obj))

    @staticmethod
    def _scale_obj(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        sel = obj.get("spec", {}).get("selector", {}).get("matchLabels", {})
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
                "metadata": {"creationTimestamp": None},
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
