"""The Hetzner Cloud API twin's HTTP face (aiohttp), mounted at ``/v1`` like https://api.hetzner.cloud/v1.

Order of checks per request, as the real API: token (401 ``unauthorized``) -> project budget (429
``rate_limit_exceeded``, with ``RateLimit-*`` headers on every authenticated answer) -> read-only tokens
may only GET (403 ``token_readonly``) -> request body against the spec (400 ``invalid_input``) -> handler.
Every response body is validated against the OpenAPI spec on the way out; violations are counted and
logged to ``schema-violations.jsonl`` so a test can insist there are none.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from lab.faults import Faults
from lab.hetzner import catalog
from lab.hetzner.errors import ApiError, invalid_input
from lab.hetzner.project import HetznerProject
from lab.hetzner.ratelimit import Budget
from lab.hetzner.schema import SpecValidator, load_validator, request_errors
from lab.labels import SelectorError, parse_selector

log = logging.getLogger("lab.hetzner")

Handler = Callable[[web.Request], Awaitable[Any]]


@dataclass
class ApiStats:
    requests: int = 0
    validated: int = 0
    violations: int = 0
    by_route: dict[str, int] = field(default_factory=dict)


class HetznerApi:
    """Owns the project, the tokens, the budget and the aiohttp application."""

    def __init__(
        self,
        project: HetznerProject,
        token: str,
        readonly_token: str,
        violations_log: Path | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.project = project
        self.tokens = {token: "read_write", readonly_token: "read_only"}
        self.budget = budget or Budget()
        self.faults = Faults()
        self.stats = ApiStats()
        self.violations_log = violations_log
        self.validator: SpecValidator = load_validator()
        self.app = web.Application(middlewares=[self._middleware], client_max_size=1024**2)
        self._routes()

    # ---- plumbing ------------------------------------------------------------------------------------

    def _json(self, request: web.Request, status: int, body: Any, headers: dict[str, str]) -> web.Response:
        route = request.match_info.route.resource
        template = route.canonical.removeprefix("/v1") if route is not None else request.path
        if status != 204:
            self.stats.validated += 1
            problems = self.validator.errors(request.method, template, status, body)
            if problems:
                self.stats.violations += 1
                log.error("schema violation %s %s %s: %s", request.method, template, status, problems)
                if self.violations_log:
                    with self.violations_log.open("a") as fh:
                        fh.write(
                            json.dumps(
                                {
                                    "method": request.method,
                                    "path": template,
                                    "status": status,
                                    "problems": problems[:5],
                                }
                            )
                            + "\n"
                        )
        if status == 204:
            return web.Response(status=204, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.stats.requests += 1
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        scope = self.tokens.get(token)
        if scope is None:
            err = ApiError("unauthorized", "unable to authenticate", None)
            return self._json(request, err.status, err.body(), {})
        now = time.monotonic()
        if now < self.faults.throttle_until or not self.budget.take():
            headers = self.budget.headers()
            err = ApiError("rate_limit_exceeded", "limit of 3600 requests per hour reached", None)
            return self._json(request, err.status, err.body(), headers)
        headers = self.budget.headers()
        if now < self.faults.latency_until:
            await asyncio.sleep(self.faults.latency_s)
        if now < self.faults.errors_until:
            err = ApiError("server_error", "internal server error (lab fault)", None)
            return self._json(request, 500, err.body(), headers)
        try:
            if scope == "read_only" and request.method != "GET":
                raise ApiError("token_readonly", "token is read-only", None)
            if request.match_info.http_exception is not None:
                raise request.match_info.http_exception
            status, body = await handler(request)
        except ApiError as exc:
            status, body = exc.status, exc.body()
        except web.HTTPNotFound:
            status, body = 404, ApiError("not_found", "no such endpoint", {}).body()
        except web.HTTPMethodNotAllowed:
            status, body = 405, ApiError("method_not_allowed", "method not allowed", {}).body()
        key = f"{request.method} {getattr(request.match_info.route.resource, 'canonical', request.path)}"
        self.stats.by_route[key] = self.stats.by_route.get(key, 0) + 1
        return self._json(request, status, body, headers)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            raw = await request.read()
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            raise ApiError("json_error", f"invalid JSON: {exc.msg}", None) from None
        if not isinstance(body, dict):
            raise ApiError("json_error", "request body must be a JSON object", None)
        template = request.match_info.route.resource.canonical.removeprefix("/v1")  # type: ignore[union-attr]
        problems = [
            p
            for p in request_errors(self.validator, request.method, template, body)
            if not _id_or_name_int(p)
        ]
        if problems:
            name, _, message = problems[0].partition(": ")
            raise invalid_input(name, message)
        return body

    # ---- routes --------------------------------------------------------------------------------------

    def _routes(self) -> None:
        r = self.app.router
        p = self.project

        def add(method: str, path: str, fn: Handler) -> None:
            r.add_route(method, "/v1" + path, fn)

        # Read-only catalogue.
        for plural, singular, items in (
            ("locations", "location", catalog.LOCATIONS),
            ("datacenters", "datacenter", catalog.DATACENTERS),
            ("server_types", "server_type", catalog.SERVER_TYPES),
            ("images", "image", catalog.IMAGES),
            ("load_balancer_types", "load_balancer_type", catalog.LOAD_BALANCER_TYPES),
        ):
            add("GET", f"/{plural}", self._lister(plural, partial(list, items)))
            add("GET", f"/{plural}/{{id}}", self._getter(singular, partial(_find, items)))

        # Project resources.
        for plural, kind in (
            ("servers", "server"),
            ("networks", "network"),
            ("firewalls", "firewall"),
            ("load_balancers", "load_balancer"),
            ("placement_groups", "placement_group"),
            ("ssh_keys", "ssh_key"),
        ):
            add(
                "GET",
                f"/{plural}",
                self._lister(plural, partial(p.render_all, kind)),
            )
            add(
                "GET",
                f"/{plural}/{{id}}",
                self._getter(kind, partial(p.render_one, kind)),
            )
            add("PUT", f"/{plural}/{{id}}", self._updater(kind))
        for plural, kind in (
            ("servers", "server"),
            ("networks", "network"),
            ("firewalls", "firewall"),
            ("load_balancers", "load_balancer"),
        ):
            add("GET", f"/{plural}/actions", self._action_lister(kind))
            add("GET", f"/{plural}/actions/{{id}}", self._action_getter())
            add("GET", f"/{plural}/{{id}}/actions", self._action_lister(kind, per_resource=True))
            add("GET", f"/{plural}/{{id}}/actions/{{action_id}}", self._action_getter("action_id"))
        add("GET", "/actions", self._action_lister(None))
        add("GET", "/actions/{id}", self._action_getter())

        add("POST", "/servers", self.create_server)
        add("DELETE", "/servers/{id}", self.delete_server)
        for cmd in ("poweron", "poweroff", "shutdown", "reboot", "reset"):
            add("POST", f"/servers/{{id}}/actions/{cmd}", self._power(cmd))
        add("POST", "/servers/{id}/actions/attach_to_network", self.server_attach_network)
        add("POST", "/servers/{id}/actions/detach_from_network", self.server_detach_network)
        add("POST", "/servers/{id}/actions/add_to_placement_group", self.server_add_pg)
        add("POST", "/servers/{id}/actions/remove_from_placement_group", self.server_remove_pg)
        add("POST", "/servers/{id}/actions/change_protection", self.server_protection)
        add("POST", "/servers/{id}/actions/rebuild", self.server_rebuild)

        add("POST", "/networks", self.create_network)
        add("DELETE", "/networks/{id}", self._deleter("network", self._network_in_use))
        add("POST", "/networks/{id}/actions/add_subnet", self.network_add_subnet)

        add("POST", "/firewalls", self.create_firewall)
        add("DELETE", "/firewalls/{id}", self._deleter("firewall", self._firewall_in_use))
        add("POST", "/firewalls/{id}/actions/set_rules", self.firewall_set_rules)
        add("POST", "/firewalls/{id}/actions/apply_to_resources", self.firewall_apply)
        add("POST", "/firewalls/{id}/actions/remove_from_resources", self.firewall_remove)

        add("POST", "/placement_groups", self.create_placement_group)
        add("DELETE", "/placement_groups/{id}", self._deleter("placement_group", self._pg_in_use))
        add("POST", "/ssh_keys", self.create_ssh_key)
        add("DELETE", "/ssh_keys/{id}", self._deleter("ssh_key", None))

        add("POST", "/load_balancers", self.create_load_balancer)
        add("DELETE", "/load_balancers/{id}", self._deleter("load_balancer", None))
        add("POST", "/load_balancers/{id}/actions/add_target", self.lb_add_target)
        add("POST", "/load_balancers/{id}/actions/remove_target", self.lb_remove_target)
        add("POST", "/load_balancers/{id}/actions/add_service", self.lb_add_service)
        add("POST", "/load_balancers/{id}/actions/update_service", self.lb_update_service)
        add("POST", "/load_balancers/{id}/actions/delete_service", self.lb_delete_service)
        add("POST", "/load_balancers/{id}/actions/attach_to_network", self.lb_attach_network)
        add("POST", "/load_balancers/{id}/actions/change_algorithm", self.lb_change_algorithm)

    # ---- generic handlers -----------------------------------------------------------------------------

    def _lister(self, plural: str, items: Callable[[], list[dict[str, Any]]]) -> Handler:
        async def handler(request: web.Request) -> tuple[int, Any]:
            q = request.query
            rows = items()
            if "name" in q:
                rows = [x for x in rows if x.get("name") == q["name"]]
            if "label_selector" in q:
                try:
                    match = parse_selector(q["label_selector"])
                except SelectorError as exc:
                    raise invalid_input("label_selector", str(exc)) from None
                rows = [x for x in rows if match(x.get("labels", {}))]
            statuses = q.getall("status", [])
            if statuses:
                rows = [x for x in rows if x.get("status") in statuses]
            for key in ("architecture", "type", "fingerprint"):
                if key in q:
                    rows = [x for x in rows if str(x.get(key)) == q[key]]
            page, meta = _sort_page(rows, q)
            return 200, {plural: page, "meta": meta}

        return handler

    def _getter(self, kind: str, fetch: Callable[[int], dict[str, Any]]) -> Handler:
        async def handler(request: web.Request) -> tuple[int, Any]:
            return 200, {kind: fetch(_int_id(request, "id", kind))}

        return handler

    def _updater(self, kind: str) -> Handler:
        async def handler(request: web.Request) -> tuple[int, Any]:
            obj = self.project.get(kind, _int_id(request, "id", kind))
            body = await self._body(request)
            if "name" in body:
                self.project._unique_name(kind, body["name"], exclude=obj["id"])
                obj["name"] = body["name"]
            if "labels" in body:
                obj["labels"] = dict(body["labels"])
            self.project.emit(kind, obj)
            return 200, {kind: self.project.render(kind, obj)}

        return handler

    def _deleter(self, kind: str, in_use: Callable[[dict[str, Any]], str | None] | None) -> Handler:
        async def handler(request: web.Request) -> tuple[int, Any]:
            obj = self.project.get(kind, _int_id(request, "id", kind))
            if obj.get("protection", {}).get("delete"):
                raise ApiError("protected", f"{kind} is delete-protected", {})
            reason = in_use(obj) if in_use else None
            if reason:
                raise ApiError("resource_in_use", reason, {})
            self.project.table(kind).pop(obj["id"])
            self.project.emit(f"{kind}_deleted", obj)
            return 204, None

        return handler

    def _action_lister(self, kind: str | None, per_resource: bool = False) -> Handler:
        async def handler(request: web.Request) -> tuple[int, Any]:
            q = request.query
            rows = list(self.project.actions.values())
            if kind:
                rows = [a for a in rows if any(r["type"] == kind for r in a["resources"])]
            if per_resource:
                rid = _int_id(request, "id", kind or "resource")
                self.project.get(kind or "server", rid)
                rows = [a for a in rows if {"id": rid, "type": kind} in a["resources"]]
            ids = q.getall("id", [])
            if ids:
                wanted = {int(i) for i in ids if i.isdigit()}
                rows = [a for a in rows if a["id"] in wanted]
            elif not per_resource and kind is None:
                raise invalid_input("id", "at least one id is required")
            statuses = q.getall("status", [])
            if statuses:
                rows = [a for a in rows if a["status"] in statuses]
            rows = [self.project.render_action(a) for a in rows]
            page, meta = _sort_page(rows, q)
            return 200, {"actions": page, "meta": meta}

        return handler

    def _action_getter(self, param: str = "id") -> Handler:
        async def handler(request: web.Request) -> tuple[int, Any]:
            aid = _int_id(request, param, "action")
            action = self.project.actions.get(aid)
            if action is None:
                raise ApiError("not_found", f"action with ID '{aid}' not found", {})
            return 200, {"action": self.project.render_action(action)}

        return handler

    # ---- servers --------------------------------------------------------------------------------------

    async def create_server(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?", body["name"]):
            raise invalid_input("name", "name must be a valid hostname")
        result = self.project.create_server(body)
        p = self.project
        return 201, {
            "server": p.render_server(result["server"]),
            "action": p.render_action(result["action"]),
            "next_actions": [p.render_action(a) for a in result["next_actions"]],
            "root_password": result["root_password"],
        }

    async def delete_server(self, request: web.Request) -> tuple[int, Any]:
        server = self.project.get("server", _int_id(request, "id", "server"))
        return 200, {"action": self.project.render_action(self.project.delete_server(server))}

    def _power(self, command: str) -> Handler:
        async def handler(request: web.Request) -> tuple[int, Any]:
            server = self.project.get("server", _int_id(request, "id", "server"))
            return 201, {"action": self.project.render_action(self.project.power(server, command))}

        return handler

    def _server_action(
        self,
        request: web.Request,
        command: str,
        effect: Callable[[], None],
        extra: list[tuple[str, int]] | None = None,
    ) -> tuple[int, Any]:
        server = self.project.get("server", _int_id(request, "id", "server"))
        action = self.project.start_action(command, [("server", server["id"]), *(extra or [])], effect)
        return 201, {"action": self.project.render_action(action)}

    async def server_attach_network(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        server = self.project.get("server", _int_id(request, "id", "server"))
        net = self.project.ref("network", body["network"], "network")
        if any(pn["network"] == net["id"] for pn in server["private_net"]):
            raise ApiError("server_already_attached", "server is already attached to this network", {})
        return self._server_action(
            request,
            "attach_to_network",
            lambda: self.project.attach_private(server, net, body.get("ip")),
            [("network", net["id"])],
        )

    async def server_detach_network(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        server = self.project.get("server", _int_id(request, "id", "server"))
        net = self.project.ref("network", body["network"], "network")

        def effect() -> None:
            server["private_net"] = [pn for pn in server["private_net"] if pn["network"] != net["id"]]

        return self._server_action(request, "detach_from_network", effect, [("network", net["id"])])

    async def server_add_pg(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        server = self.project.get("server", _int_id(request, "id", "server"))
        pg = self.project.ref("placement_group", body["placement_group"], "placement_group")
        if server["status"] != "off":
            raise ApiError("server_not_stopped", "server must be stopped to change its placement group", {})
        return self._server_action(
            request, "add_to_placement_group", lambda: server.__setitem__("placement_group_id", pg["id"])
        )

    async def server_remove_pg(self, request: web.Request) -> tuple[int, Any]:
        server = self.project.get("server", _int_id(request, "id", "server"))
        return self._server_action(
            request, "remove_from_placement_group", lambda: server.__setitem__("placement_group_id", None)
        )

    async def server_protection(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        server = self.project.get("server", _int_id(request, "id", "server"))
        return self._server_action(
            request,
            "change_protection",
            lambda: server["protection"].update(
                {k: bool(v) for k, v in body.items() if k in ("delete", "rebuild")}
            ),
        )

    async def server_rebuild(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        server = self.project.get("server", _int_id(request, "id", "server"))
        if server["protection"]["rebuild"]:
            raise ApiError("protected", "server is rebuild-protected", {})
        image = catalog.by_id_or_name(
            catalog.IMAGES, body["image"], architecture=server["server_type"]["architecture"]
        )
        if image is None:
            raise invalid_input("image", "image not found")

        def effect() -> None:
            server["image"] = image
            server["status"] = "running"
            self.project.emit("server_rebuilt", server)

        code, payload = self._server_action(request, "rebuild_server", effect)
        return code, {**payload, "root_password": None}

    # ---- networks, firewalls, placement groups, keys -------------------------------------------------

    async def create_network(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        net = self.project.new_network(
            name=body["name"],
            ip_range=body["ip_range"],
            subnets=body.get("subnets", []),
            labels=body.get("labels"),
        )
        self.project.emit("network", net)
        return 201, {"network": self.project.render_network(net)}

    def _network_in_use(self, net: dict[str, Any]) -> str | None:
        rendered = self.project.render_network(net)
        return (
            "network still has attached resources"
            if rendered["servers"] or rendered["load_balancers"]
            else None
        )

    async def network_add_subnet(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        net = self.project.get("network", _int_id(request, "id", "network"))
        self.project.add_subnet(net, body)
        action = self.project.start_action("add_subnet", [("network", net["id"])])
        return 201, {"action": self.project.render_action(action)}

    async def create_firewall(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        fw = self.project.new_firewall(
            name=body["name"], rules=body.get("rules", []), labels=body.get("labels")
        )
        actions = []
        for entry in body.get("apply_to", []):
            actions.append(self._apply_firewall(fw, entry))
        return 201, {
            "firewall": self.project.render_firewall(fw),
            "actions": [self.project.render_action(a) for a in actions],
        }

    def _apply_firewall(self, fw: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
        if entry["type"] == "server":
            sid = int(entry["server"]["id"])
            self.project.get("server", sid)
            if any(e.get("server", {}).get("id") == sid for e in fw["applied_to"]):
                raise ApiError("firewall_already_applied", "firewall is already applied to this server", {})
            fw["applied_to"].append({"type": "server", "server": {"id": sid}})
            resources = [("firewall", fw["id"]), ("server", sid)]
        else:
            selector = entry["label_selector"]["selector"]
            try:
                parse_selector(selector)
            except SelectorError as exc:
                raise invalid_input("label_selector", str(exc)) from None
            fw["applied_to"].append({"type": "label_selector", "label_selector": {"selector": selector}})
            resources = [("firewall", fw["id"])]
        return self.project.start_action("apply_firewall", resources)

    def _firewall_in_use(self, fw: dict[str, Any]) -> str | None:
        return "firewall is still applied to resources" if fw["applied_to"] else None

    async def firewall_set_rules(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        fw = self.project.get("firewall", _int_id(request, "id", "firewall"))
        fw["rules"] = [self.project._rule(r) for r in body["rules"]]
        self.project.emit("firewall", fw)
        actions = [self.project.start_action("set_firewall_rules", [("firewall", fw["id"])])]
        return 201, {"actions": [self.project.render_action(a) for a in actions]}

    async def firewall_apply(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        fw = self.project.get("firewall", _int_id(request, "id", "firewall"))
        actions = [self._apply_firewall(fw, e) for e in body["apply_to"]]
        self.project.emit("firewall", fw)
        return 201, {"actions": [self.project.render_action(a) for a in actions]}

    async def firewall_remove(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        fw = self.project.get("firewall", _int_id(request, "id", "firewall"))
        actions = []
        for entry in body["remove_from"]:
            key = (
                ("server", entry["server"]["id"])
                if entry["type"] == "server"
                else ("label_selector", entry["label_selector"]["selector"])
            )
            before = len(fw["applied_to"])
            fw["applied_to"] = [
                e
                for e in fw["applied_to"]
                if not (
                    e["type"] == key[0]
                    and (
                        e.get("server", {}).get("id") == key[1]
                        or e.get("label_selector", {}).get("selector") == key[1]
                    )
                )
            ]
            if len(fw["applied_to"]) == before:
                raise ApiError("firewall_resource_not_found", "firewall is not applied to that resource", {})
            actions.append(self.project.start_action("remove_firewall", [("firewall", fw["id"])]))
        self.project.emit("firewall", fw)
        return 201, {"actions": [self.project.render_action(a) for a in actions]}

    def _pg_in_use(self, pg: dict[str, Any]) -> str | None:
        return (
            "placement group still has servers"
            if self.project.render_placement_group(pg)["servers"]
            else None
        )

    async def create_placement_group(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        pg = self.project.new_placement_group(
            name=body["name"], type_=body["type"], labels=body.get("labels")
        )
        return 201, {"placement_group": self.project.render_placement_group(pg), "action": None}

    async def create_ssh_key(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        key = self.project.new_ssh_key(
            name=body["name"], public_key=body["public_key"], labels=body.get("labels")
        )
        return 201, {"ssh_key": key}

    # ---- load balancers --------------------------------------------------------------------------

    def _lb(self, request: web.Request) -> dict[str, Any]:
        return self.project.get("load_balancer", _int_id(request, "id", "load_balancer"))

    def _lb_action(self, lb: dict[str, Any], command: str, effect: Callable[[], None]) -> tuple[int, Any]:
        action = self.project.start_action(command, [("load_balancer", lb["id"])], effect)
        return 201, {"action": self.project.render_action(action)}

    async def create_load_balancer(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        p = self.project
        lb_type = catalog.by_id_or_name(catalog.LOAD_BALANCER_TYPES, body["load_balancer_type"])
        if lb_type is None:
            raise invalid_input("load_balancer_type", "load balancer type not found")
        loc = catalog.by_id_or_name(catalog.LOCATIONS, body.get("location") or "nbg1")
        if loc is None:
            raise invalid_input("location", "location not found")
        lb = p.new_load_balancer(
            name=body["name"],
            lb_type=lb_type,
            location=loc,
            algorithm=(body.get("algorithm") or {}).get("type", "round_robin"),
            labels=body.get("labels"),
        )
        try:
            if body.get("network"):
                net = p.ref("network", body["network"], "network")
                lb["private_net"].append({"network": net["id"], "ip": p._free_private_ip(net)})
            for svc in body.get("services", []):
                lb["services"].append(p.service(svc))
            for target in body.get("targets", []):
                p.add_target(lb, target)
        except ApiError:
            p.load_balancers.pop(lb["id"], None)
            raise
        lb["public_net"]["enabled"] = body.get("public_interface", True)
        action = p.start_action("create_load_balancer", [("load_balancer", lb["id"])])
        p.emit("load_balancer", lb)
        return 201, {"load_balancer": p.render_load_balancer(lb), "action": p.render_action(action)}

    async def lb_add_target(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        lb = self._lb(request)
        self.project.add_target(lb, body)  # listed at once with health "unknown", as on the real API
        return self._lb_action(lb, "add_target", lambda: self.project.emit("load_balancer", lb))

    async def lb_remove_target(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        lb = self._lb(request)
        sid = int(body.get("server", {}).get("id", -1))
        if not any(t.get("server", {}).get("id") == sid for t in lb["targets"]):
            raise ApiError("target_not_found", "target not found", {})
        lb["targets"] = [t for t in lb["targets"] if t.get("server", {}).get("id") != sid]
        for key in [k for k in self.project.health if k[0] == lb["id"] and k[1] == sid]:
            del self.project.health[key]
        return self._lb_action(lb, "remove_target", lambda: self.project.emit("load_balancer", lb))

    async def lb_add_service(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        lb = self._lb(request)
        svc = self.project.service(body)
        if any(s["listen_port"] == svc["listen_port"] for s in lb["services"]):
            raise ApiError("source_port_already_used", "listen port is already used by a service", {})
        lb["services"].append(svc)
        return self._lb_action(lb, "add_service", lambda: self.project.emit("load_balancer", lb))

    async def lb_update_service(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        lb = self._lb(request)
        svc = next((s for s in lb["services"] if s["listen_port"] == body["listen_port"]), None)
        if svc is None:
            raise ApiError("not_found", "service not found", {})
        for k in ("protocol", "destination_port", "proxyprotocol"):
            if k in body:
                svc[k] = body[k]
        if "health_check" in body:
            svc["health_check"].update({k: v for k, v in body["health_check"].items() if k != "http"})
        return self._lb_action(lb, "update_service", lambda: self.project.emit("load_balancer", lb))

    async def lb_delete_service(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        lb = self._lb(request)
        if not any(s["listen_port"] == body["listen_port"] for s in lb["services"]):
            raise ApiError("not_found", "service not found", {})
        lb["services"] = [s for s in lb["services"] if s["listen_port"] != body["listen_port"]]
        return self._lb_action(lb, "delete_service", lambda: self.project.emit("load_balancer", lb))

    async def lb_attach_network(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        lb = self._lb(request)
        net = self.project.ref("network", body["network"], "network")
        if any(pn["network"] == net["id"] for pn in lb["private_net"]):
            raise ApiError("load_balancer_already_attached", "already attached to this network", {})
        ip = body.get("ip") or self.project._free_private_ip(net)
        return self._lb_action(
            lb, "attach_to_network", lambda: lb["private_net"].append({"network": net["id"], "ip": ip})
        )

    async def lb_change_algorithm(self, request: web.Request) -> tuple[int, Any]:
        body = await self._body(request)
        lb = self._lb(request)
        return self._lb_action(lb, "change_algorithm", lambda: lb["algorithm"].update(type=body["type"]))


def _id_or_name_int(problem: str) -> bool:
    """The spec types "ID or name" fields as strings, yet the API (and hcloud-python) send integer IDs."""
    return bool(re.search(r": \d+ is not of type 'string'$", problem))


def _sort_key(name: str, row: dict[str, Any]) -> tuple[bool, Any]:
    """Hetzner's ``sort=``: rows without the field last."""
    return row.get(name) is None, row.get(name) or 0


def _find(items: list[dict[str, Any]], ident: int) -> dict[str, Any]:
    for item in items:
        if item["id"] == ident:
            return item
    raise ApiError("not_found", f"resource with ID '{ident}' not found", {})


def _int_id(request: web.Request, param: str, kind: str) -> int:
    raw = request.match_info[param]
    if not raw.isdigit():
        raise invalid_input("id", f"invalid {kind} ID {raw!r}")
    return int(raw)


def _sort_page(rows: list[dict[str, Any]], q: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``sort=field[:asc|:desc]`` (repeatable), then ``page``/``per_page`` (default 25, max 50)."""
    for spec in reversed(q.getall("sort", ["id"])):
        name, _, direction = spec.partition(":")
        if name not in ("id", "name", "created", "status", "command", "started", "finished", "progress"):
            raise invalid_input("sort", f"invalid sort field {name!r}")
        rows = sorted(
            rows,
            key=partial(_sort_key, name),
            reverse=direction == "desc",
        )
    try:
        page = max(1, int(q.get("page", 1)))
        per_page = max(1, min(50, int(q.get("per_page", 25))))
    except ValueError:
        raise invalid_input("page", "page and per_page must be integers") from None
    total = len(rows)
    last = max(1, -(-total // per_page))
    chunk = rows[(page - 1) * per_page : page * per_page]
    meta = {
        "pagination": {
            "page": page,
            "per_page": per_page,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last else None,
            "last_page": last,
            "total_entries": total,
        }
    }
    return chunk, meta
