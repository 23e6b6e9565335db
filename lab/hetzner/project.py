"""One Hetzner Cloud project's state and behaviour, with no HTTP in it.

Resources are kept as the API's own JSON dicts (so the shape is the spec's by construction); fields that
the real API derives from other resources (``server.load_balancers``, ``server.public_net.firewalls``,
``network.servers``, target ``health_status`` …) are computed when rendered, so they can never disagree.

Actions take time: each has a duration (scaled by ``speed``; ``--fast`` makes it short), its ``progress``
advances with the clock, and its effect (a server turning ``off``, a target added …) happens when it
finishes — which is what clients polling ``/actions/{id}`` observe on the real API.

Load-balancer health follows the load balancer's own health-check settings: every ``interval`` each
target is probed per service, ``retries`` consecutive failures mark it unhealthy, one success healthy.
The probe is pluggable (:attr:`HetznerProject.target_probe`): until the Kubernetes twin supplies real
ingress listeners it asks "is the server running?".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lab.hetzner import catalog
from lab.hetzner.errors import ApiError, invalid_input, not_found, uniqueness

# Seconds each action takes at speed 1 (roughly what the real API takes).
BOOT_S = 20.0  # a reset or rebooted server's OS and k3s coming back, after its action
DURATIONS = {
    "create_server": 10.0,
    "start_server": 5.0,
    "stop_server": 2.0,
    "shutdown_server": 6.0,
    "reboot_server": 5.0,
    "reset_server": 3.0,
    "delete_server": 3.0,
    "rebuild_server": 10.0,
    "attach_to_network": 2.0,
    "detach_from_network": 2.0,
}
DEFAULT_DURATION = 1.0

Probe = Callable[[dict[str, Any], int], Awaitable[bool]]
Listener = Callable[[str, dict[str, Any]], None]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass
class TargetHealth:
    status: str = "unknown"
    failures: int = 0
    since: float = field(default_factory=time.time)


class HetznerProject:
    """All resources of one project, their actions, and the load balancers' health checks."""

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self.rebooting: set[int] = set()  # reset/rebooted servers still booting (their node is down)
        self.servers: dict[int, dict[str, Any]] = {}
        self.networks: dict[int, dict[str, Any]] = {}
        self.firewalls: dict[int, dict[str, Any]] = {}
        self.load_balancers: dict[int, dict[str, Any]] = {}
        self.placement_groups: dict[int, dict[str, Any]] = {}
        self.ssh_keys: dict[int, dict[str, Any]] = {}
        self.actions: dict[int, dict[str, Any]] = {}
        self._action_meta: dict[int, tuple[float, float]] = {}  # id -> (started, duration)
        self._ids = itertools.count(int(time.time()) % 1_000_000 * 100 + 1)
        self._action_ids = itertools.count(1_000_001)
        self._ip4 = itertools.count(10)
        self.health: dict[tuple[int, int, int], TargetHealth] = {}
        self.health_log: list[dict[str, Any]] = []  # ground truth: every target health transition
        self.listeners: list[Listener] = []
        self.target_probe: Probe = self._server_running_probe
        self._tasks: set[asyncio.Task[None]] = set()
        self._monitors: dict[int, asyncio.Task[None]] = {}

    # ---- ids, events, time -------------------------------------------------------------------------

    def new_id(self) -> int:
        return next(self._ids)

    def emit(self, kind: str, obj: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(kind, obj)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in [*self._tasks, *self._monitors.values()]:
            task.cancel()
        for task in [*self._tasks, *self._monitors.values()]:
            with contextlib.suppress(BaseException):
                await task

    # ---- actions ------------------------------------------------------------------------------------

    def start_action(
        self,
        command: str,
        resources: list[tuple[str, int]],
        effect: Callable[[], None] | None = None,
        duration: float | None = None,
        error: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a running action; after its (scaled) duration apply ``effect`` and mark it finished."""
        for kind, rid in resources:
            if self.locked(kind, rid):
                raise ApiError("locked", f"{kind} {rid} is locked by a running action", {})
        aid = next(self._action_ids)
        now = time.time()
        base = DURATIONS.get(command, DEFAULT_DURATION) if duration is None else duration
        secs = base * self.speed
        action = {
            "id": aid,
            "command": command,
            "status": "running",
            "progress": 0,
            "started": iso(now),
            "finished": None,
            "resources": [{"id": rid, "type": kind} for kind, rid in resources],
            "error": None,
        }
        self.actions[aid] = action
        self._action_meta[aid] = (now, secs)

        async def run() -> None:
            await asyncio.sleep(secs)
            if error is None and effect is not None:
                try:
                    effect()
                except ApiError as exc:
                    self._finish(aid, (exc.code, exc.message))
                    return
            self._finish(aid, error)

        self._spawn(run())
        return action

    def _finish(self, aid: int, error: tuple[str, str] | None) -> None:
        action = self.actions[aid]
        action.update(
            progress=100,
            finished=iso(time.time()),
            status="error" if error else "success",
            error={"code": error[0], "message": error[1]} if error else None,
        )
        self.emit("action", action)

    def render_action(self, action: dict[str, Any]) -> dict[str, Any]:
        if action["status"] == "running":
            started, secs = self._action_meta[action["id"]]
            frac = (time.time() - started) / secs if secs > 0 else 1.0
            return {**action, "progress": max(0, min(99, int(frac * 100)))}
        return dict(action)

    def locked(self, kind: str, rid: int) -> bool:
        return any(
            a["status"] == "running"
            and {"id": rid, "type": kind} in a["resources"]
            and a["command"] not in ("set_firewall_rules", "apply_firewall")
            for a in self.actions.values()
        )

    # ---- lookups ------------------------------------------------------------------------------------

    def get(self, kind: str, rid: int) -> dict[str, Any]:
        table = self.table(kind)
        if rid not in table:
            raise not_found(kind.replace("_", " "), rid)
        return table[rid]

    def table(self, kind: str) -> dict[int, dict[str, Any]]:
        return {
            "server": self.servers,
            "network": self.networks,
            "firewall": self.firewalls,
            "load_balancer": self.load_balancers,
            "placement_group": self.placement_groups,
            "ssh_key": self.ssh_keys,
        }[kind]

    def ref(self, kind: str, value: object, field_name: str) -> dict[str, Any]:
        """Resolve a request's reference (ID or name) to an existing resource, or fail as the API does."""
        table = self.table(kind)
        if isinstance(value, dict):
            value = value.get("id", value.get("name"))
        if isinstance(value, int) and value in table:
            return table[value]
        if isinstance(value, str):
            for item in table.values():
                if item["name"] == value or (value.isdigit() and item["id"] == int(value)):
                    return item
        raise invalid_input(field_name, f"{kind.replace('_', ' ')} {value!r} not found")

    def _unique_name(self, kind: str, name: str, exclude: int | None = None) -> None:
        if any(item["name"] == name and item["id"] != exclude for item in self.table(kind).values()):
            raise uniqueness("name")

    # ---- rendering (derived fields) -----------------------------------------------------------------

    def render_server(self, s: dict[str, Any]) -> dict[str, Any]:
        out = dict(s)
        out["load_balancers"] = [
            lb["id"]
            for lb in self.load_balancers.values()
            if any(t.get("server", {}).get("id") == s["id"] for t in lb["targets"])
        ]
        out["public_net"] = {
            **s["public_net"],
            "firewalls": [
                {"id": fw["id"], "status": "applied"}
                for fw in self.firewalls.values()
                if self._firewall_applies(fw, s)
            ],
        }
        pg = s.get("placement_group_id")
        out.pop("placement_group_id", None)
        out["placement_group"] = self.render_placement_group(self.placement_groups[pg]) if pg else None
        return out

    def render_network(self, n: dict[str, Any]) -> dict[str, Any]:
        return {
            **n,
            "servers": [
                s["id"]
                for s in self.servers.values()
                if any(p["network"] == n["id"] for p in s["private_net"])
            ],
            "load_balancers": [
                lb["id"]
                for lb in self.load_balancers.values()
                if any(p["network"] == n["id"] for p in lb["private_net"])
            ],
        }

    def render_firewall(self, fw: dict[str, Any]) -> dict[str, Any]:
        applied = []
        for entry in fw["applied_to"]:
            if entry["type"] == "label_selector":
                from lab.labels import parse_selector

                match = parse_selector(entry["label_selector"]["selector"])
                entry = {
                    **entry,
                    "applied_to_resources": [
                        {"type": "server", "server": {"id": s["id"]}}
                        for s in self.servers.values()
                        if match(s["labels"])
                    ],
                }
            applied.append(entry)
        return {**fw, "applied_to": applied}

    def render_placement_group(self, pg: dict[str, Any]) -> dict[str, Any]:
        return {
            **pg,
            "servers": [s["id"] for s in self.servers.values() if s.get("placement_group_id") == pg["id"]],
        }

    def render_load_balancer(self, lb: dict[str, Any]) -> dict[str, Any]:
        targets = []
        for t in lb["targets"]:
            t = dict(t)
            if t["type"] == "server":
                t["health_status"] = [
                    {
                        "listen_port": svc["listen_port"],
                        "status": self.health.get(
                            (lb["id"], t["server"]["id"], svc["listen_port"]), TargetHealth()
                        ).status,
                    }
                    for svc in lb["services"]
                ]
            targets.append(t)
        return {**lb, "targets": targets}

    def render_all(self, kind: str) -> list[dict[str, Any]]:
        return [self.render(kind, o) for o in self.table(kind).values()]

    def render_one(self, kind: str, rid: int) -> dict[str, Any]:
        return self.render(kind, self.get(kind, rid))

    def render(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        fn = {
            "server": self.render_server,
            "network": self.render_network,
            "firewall": self.render_firewall,
            "load_balancer": self.render_load_balancer,
            "placement_group": self.render_placement_group,
        }.get(kind)
        return fn(obj) if fn else dict(obj)

    def _firewall_applies(self, fw: dict[str, Any], server: dict[str, Any]) -> bool:
        rendered = self.render_firewall(fw)
        for entry in rendered["applied_to"]:
            if entry["type"] == "server" and entry["server"]["id"] == server["id"]:
                return True
            if entry["type"] == "label_selector" and any(
                r["server"]["id"] == server["id"] for r in entry.get("applied_to_resources", [])
            ):
                return True
        return False

    # ---- servers ------------------------------------------------------------------------------------

    def new_server(
        self,
        *,
        name: str,
        server_type: dict[str, Any],
        image: dict[str, Any],
        datacenter: dict[str, Any],
        sid: int | None = None,
        status: str = "running",
        ipv4: str | None = None,
        labels: dict[str, str] | None = None,
        created: float | None = None,
    ) -> dict[str, Any]:
        sid = sid or self.new_id()
        ipv4 = ipv4 or f"203.0.113.{next(self._ip4) % 250 + 2}"
        n = sid % 65536
        server = {
            "id": sid,
            "name": name,
            "status": status,
            "created": iso(created or time.time()),
            "public_net": {
                "ipv4": {
                    "id": sid + 7,
                    "ip": ipv4,
                    "blocked": False,
                    "dns_ptr": f"static.{'.'.join(reversed(ipv4.split('.')))}.clients.your-server.de",
                },
                "ipv6": {"id": sid + 8, "ip": f"2001:db8:{n:x}::/64", "blocked": False, "dns_ptr": []},
                "floating_ips": [],
            },
            "private_net": [],
            "server_type": server_type,
            "datacenter": datacenter,
            "location": datacenter["location"],
            "image": image,
            "iso": None,
            "rescue_enabled": False,
            "locked": False,
            "backup_window": None,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": 21990232555520,
            "protection": {"delete": False, "rebuild": False},
            "labels": labels or {},
            "volumes": [],
            "primary_disk_size": int(server_type["disk"]),
            "placement_group_id": None,
        }
        self.servers[sid] = server
        return server

    def attach_private(self, server: dict[str, Any], network: dict[str, Any], ip: str | None) -> None:
        if any(p["network"] == network["id"] for p in server["private_net"]):
            raise ApiError("server_already_attached", "server is already attached to this network", {})
        ip = ip or self._free_private_ip(network)
        mac = "86:00:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
        server["private_net"].append(
            {"network": network["id"], "ip": ip, "alias_ips": [], "mac_address": mac}
        )

    def _free_private_ip(self, network: dict[str, Any]) -> str:
        used = {p["ip"] for s in self.servers.values() for p in s["private_net"]}
        used |= {p["ip"] for lb in self.load_balancers.values() for p in lb["private_net"]}
        subnet = ipaddress.ip_network(
            network["subnets"][0]["ip_range"] if network["subnets"] else network["ip_range"]
        )
        for host in itertools.islice(subnet.hosts(), 1, None):
            if str(host) not in used:
                return str(host)
        raise ApiError("ip_not_available", "no free IP left in the network", {})

    def create_server(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["name"]
        self._unique_name("server", name)
        st = catalog.by_id_or_name(catalog.SERVER_TYPES, body["server_type"])
        if st is None:
            raise invalid_input("server_type", f"server type {body['server_type']!r} not found")
        image = catalog.by_id_or_name(catalog.IMAGES, body["image"], architecture=st["architecture"])
        if image is None:
            raise invalid_input("image", f"image {body['image']!r} not found for {st['architecture']}")
        if body.get("datacenter"):
            dc = catalog.by_id_or_name(catalog.DATACENTERS, body["datacenter"])
            if dc is None:
                raise invalid_input("datacenter", "datacenter not found")
        else:
            loc = body.get("location", "nbg1")
            dc = next(
                (
                    d
                    for d in catalog.DATACENTERS
                    if d["location"]["name"] == loc or str(d["location"]["id"]) == str(loc)
                ),
                None,
            )
            if dc is None:
                raise invalid_input("location", f"location {loc!r} not found")
        keys = [self.ref("ssh_key", k, "ssh_keys") for k in body.get("ssh_keys", [])]
        networks = [self.ref("network", n, "networks") for n in body.get("networks", [])]
        firewalls = [self.ref("firewall", f.get("firewall"), "firewalls") for f in body.get("firewalls", [])]
        pg = (
            self.ref("placement_group", body["placement_group"], "placement_group")
            if body.get("placement_group")
            else None
        )
        start = body.get("start_after_create", True)
        server = self.new_server(
            name=name,
            server_type=st,
            image=image,
            datacenter=dc,
            status="initializing",
            labels=body.get("labels") or {},
        )
        for net in networks:
            self.attach_private(server, net, None)
        for fw in firewalls:
            fw["applied_to"].append({"type": "server", "server": {"id": server["id"]}})
        if pg:
            server["placement_group_id"] = pg["id"]
        server["_ssh_keys"] = [k["id"] for k in keys]
        server["_user_data"] = body.get("user_data")

        def created() -> None:
            server["status"] = "starting" if start else "off"
            self.emit("server", server)

        create = self.start_action("create_server", [("server", server["id"])], created)
        next_actions = []
        if start:
            # The start action begins when the create finishes; clients wait for both.
            def started() -> None:
                server["status"] = "running"
                self.emit("server", server)

            start_action = self.start_action(
                "start_server", [], started, duration=DURATIONS["create_server"] + DURATIONS["start_server"]
            )
            start_action["resources"] = [{"id": server["id"], "type": "server"}]
            next_actions.append(start_action)
        self.emit("server", server)
        return {
            "server": server,
            "action": create,
            "next_actions": next_actions,
            "root_password": None if keys else secrets.token_urlsafe(12),
        }

    def destroy_everything(self) -> dict[str, int]:
        """The lab's disaster: every resource of the project gone at once (the token still works)."""
        counts = {}
        for kind, table in (
            ("servers", self.servers),
            ("load_balancers", self.load_balancers),
            ("networks", self.networks),
            ("firewalls", self.firewalls),
            ("placement_groups", self.placement_groups),
            ("ssh_keys", self.ssh_keys),
        ):
            counts[kind] = len(table)
            gone = list(table.values())
            table.clear()
            if kind == "servers":
                for server in gone:
                    self.emit("server_deleted", server)
        for task in self._monitors.values():
            task.cancel()
        self._monitors.clear()
        self.health.clear()
        return counts

    def delete_server(self, server: dict[str, Any]) -> dict[str, Any]:
        if server["protection"]["delete"]:
            raise ApiError("protected", "server is delete-protected", {})
        server["status"] = "deleting"

        def gone() -> None:
            self.servers.pop(server["id"], None)
            for lb in self.load_balancers.values():
                lb["targets"] = [t for t in lb["targets"] if t.get("server", {}).get("id") != server["id"]]
            for fw in self.firewalls.values():
                fw["applied_to"] = [
                    e for e in fw["applied_to"] if e.get("server", {}).get("id") != server["id"]
                ]
            self.emit("server_deleted", server)

        self.emit("server", server)
        return self.start_action("delete_server", [("server", server["id"])], gone)

    def power(self, server: dict[str, Any], command: str) -> dict[str, Any]:
        """poweron, poweroff, shutdown, reboot, reset — the status the real API reports afterwards."""
        names = {
            "poweron": "start_server",
            "poweroff": "stop_server",
            "shutdown": "shutdown_server",
            "reboot": "reboot_server",
            "reset": "reset_server",
        }
        action_name = names[command]
        if command == "poweron" and server["status"] == "off":
            server["status"] = "starting"
        if command in ("poweroff", "shutdown") and server["status"] == "running":
            server["status"] = "stopping"

        def booted() -> None:
            self.rebooting.discard(server["id"])
            self.emit("server_booted", server)

        def done() -> None:
            if command == "poweron":
                server["status"] = "running"
            elif command in ("poweroff", "shutdown"):
                server["status"] = "off"
            self.emit("server", server)
            if command in ("reboot", "reset"):
                self.emit("server_rebooted", server)
                asyncio.get_running_loop().call_later(BOOT_S * self.speed, booted)

        if command in ("reboot", "reset"):
            self.rebooting.add(server["id"])  # the OS goes down at once; it is back a boot after the action
        self.emit("server", server)
        return self.start_action(action_name, [("server", server["id"])], done)

    # ---- networks, firewalls, keys, placement groups -------------------------------------------------

    def new_network(
        self,
        *,
        name: str,
        ip_range: str,
        subnets: list[dict[str, Any]],
        nid: int | None = None,
        labels: dict[str, str] | None = None,
        created: float | None = None,
    ) -> dict[str, Any]:
        self._unique_name("network", name)
        try:
            ipaddress.ip_network(ip_range)
        except ValueError:
            raise invalid_input("ip_range", "invalid IP range") from None
        nid = nid or self.new_id()
        net = {
            "id": nid,
            "name": name,
            "ip_range": ip_range,
            "subnets": [],
            "routes": [],
            "servers": [],
            "load_balancers": [],
            "protection": {"delete": False},
            "labels": labels or {},
            "created": iso(created or time.time()),
            "expose_routes_to_vswitch": False,
        }
        for sub in subnets:
            self.add_subnet(net, sub)
        self.networks[nid] = net
        return net

    def add_subnet(self, net: dict[str, Any], sub: dict[str, Any]) -> None:
        rng = ipaddress.ip_network(sub.get("ip_range") or net["ip_range"])
        if not rng.subnet_of(ipaddress.ip_network(net["ip_range"])):  # type: ignore[arg-type]
            raise invalid_input("ip_range", "subnet is not inside the network's range")
        net["subnets"].append(
            {
                "type": sub.get("type", "cloud"),
                "ip_range": str(rng),
                "network_zone": sub["network_zone"],
                "gateway": str(next(rng.hosts())),
                "vswitch_id": sub.get("vswitch_id"),
            }
        )

    def new_firewall(
        self,
        *,
        name: str,
        rules: list[dict[str, Any]],
        fid: int | None = None,
        labels: dict[str, str] | None = None,
        created: float | None = None,
    ) -> dict[str, Any]:
        self._unique_name("firewall", name)
        fid = fid or self.new_id()
        fw = {
            "id": fid,
            "name": name,
            "labels": labels or {},
            "created": iso(created or time.time()),
            "rules": [self._rule(r) for r in rules],
            "applied_to": [],
        }
        self.firewalls[fid] = fw
        return fw

    @staticmethod
    def _rule(rule: dict[str, Any]) -> dict[str, Any]:
        if rule["protocol"] in ("tcp", "udp") and not rule.get("port"):
            raise invalid_input("rules", "port is required for tcp and udp rules")
        direction = rule["direction"]
        return {
            "description": rule.get("description"),
            "direction": direction,
            "protocol": rule["protocol"],
            "port": rule.get("port"),
            "source_ips": rule.get("source_ips", []) if direction == "in" else [],
            "destination_ips": rule.get("destination_ips", []) if direction == "out" else [],
        }

    def new_ssh_key(
        self, *, name: str, public_key: str, kid: int | None = None, labels: dict[str, str] | None = None
    ) -> dict[str, Any]:
        self._unique_name("ssh_key", name)
        parts = public_key.split()
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except (IndexError, ValueError):
            raise invalid_input("public_key", "invalid public key") from None
        digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
        fingerprint = ":".join(digest[i : i + 2] for i in range(0, 32, 2))
        if any(k["fingerprint"] == fingerprint for k in self.ssh_keys.values()):
            raise uniqueness("public_key")
        kid = kid or self.new_id()
        key = {
            "id": kid,
            "name": name,
            "fingerprint": fingerprint,
            "public_key": public_key,
            "labels": labels or {},
            "created": iso(time.time()),
        }
        self.ssh_keys[kid] = key
        return key

    def new_placement_group(
        self, *, name: str, type_: str = "spread", labels: dict[str, str] | None = None
    ) -> dict[str, Any]:
        self._unique_name("placement_group", name)
        pid = self.new_id()
        pg = {
            "id": pid,
            "name": name,
            "type": type_,
            "labels": labels or {},
            "servers": [],
            "created": iso(time.time()),
        }
        self.placement_groups[pid] = pg
        return pg

    # ---- load balancers ---------------------------------------------------------------------------

    def new_load_balancer(
        self,
        *,
        name: str,
        lb_type: dict[str, Any],
        location: dict[str, Any],
        algorithm: str = "round_robin",
        lid: int | None = None,
        ipv4: str | None = None,
        labels: dict[str, str] | None = None,
        created: float | None = None,
    ) -> dict[str, Any]:
        self._unique_name("load_balancer", name)
        lid = lid or self.new_id()
        ipv4 = ipv4 or f"203.0.113.{next(self._ip4) % 250 + 2}"
        lb = {
            "id": lid,
            "name": name,
            "created": iso(created or time.time()),
            "labels": labels or {},
            "load_balancer_type": lb_type,
            "location": location,
            "algorithm": {"type": algorithm},
            "public_net": {
                "enabled": True,
                "ipv4": {"ip": ipv4, "dns_ptr": f"static.{ipv4}.clients.your-server.de"},
                "ipv6": {"ip": f"2001:db8:ff:{lid % 65536:x}::1", "dns_ptr": None},
            },
            "private_net": [],
            "protection": {"delete": False},
            "services": [],
            "targets": [],
            "included_traffic": 21990232555520,
            "ingoing_traffic": 0,
            "outgoing_traffic": 0,
        }
        self.load_balancers[lid] = lb
        self._ensure_monitor(lb)
        return lb

    @staticmethod
    def service(body: dict[str, Any]) -> dict[str, Any]:
        port = body.get("listen_port") or (80 if body["protocol"] == "http" else 443)
        hc = body.get("health_check") or {}
        check = {
            "protocol": hc.get("protocol", "tcp"),
            "port": hc.get("port", body.get("destination_port", port)),
            "interval": hc.get("interval", 15),
            "timeout": hc.get("timeout", 10),
            "retries": hc.get("retries", 3),
        }
        if check["protocol"] == "http":
            check["http"] = {
                "domain": None,
                "path": "/",
                "response": "",
                "status_codes": ["2??", "3??"],
                "tls": False,
                **hc.get("http", {}),
            }
        svc: dict[str, Any] = {
            "protocol": body["protocol"],
            "listen_port": port,
            "destination_port": body.get("destination_port", port),
            "proxyprotocol": body.get("proxyprotocol", False),
            "health_check": check,
        }
        if body["protocol"] in ("http", "https"):
            svc["http"] = {
                "cookie_name": "HCLBSTICKY",
                "cookie_lifetime": 300,
                "certificates": [],
                "redirect_http": False,
                "sticky_sessions": False,
                **(body.get("http") or {}),
            }
        return svc

    def add_target(self, lb: dict[str, Any], body: dict[str, Any]) -> None:
        if body["type"] != "server":
            raise invalid_input("type", "the lab's load balancers take server targets only")
        server = self.get("server", int(body["server"]["id"]))
        if any(t.get("server", {}).get("id") == server["id"] for t in lb["targets"]):
            raise ApiError("target_already_defined", "target is already defined", {})
        use_private = bool(body.get("use_private_ip", False))
        if use_private and not any(
            p["network"] in {n["network"] for n in lb["private_net"]} for p in server["private_net"]
        ):
            raise ApiError(
                "load_balancer_not_attached_to_network",
                "load balancer and target are not in the same network",
                {},
            )
        lb["targets"].append(
            {"type": "server", "server": {"id": server["id"]}, "use_private_ip": use_private}
        )

    def _ensure_monitor(self, lb: dict[str, Any]) -> None:
        if lb["id"] not in self._monitors:
            with contextlib.suppress(RuntimeError):  # no running loop (seeding before serve)
                self._monitors[lb["id"]] = asyncio.get_running_loop().create_task(self._monitor(lb["id"]))

    def start_monitors(self) -> None:
        for lb in self.load_balancers.values():
            self._ensure_monitor(lb)

    async def _server_running_probe(self, server: dict[str, Any], port: int) -> bool:
        return bool(server["status"] == "running")

    async def _monitor(self, lb_id: int) -> None:
        """One health-check loop per load balancer, per its services' own interval/timeout/retries."""
        next_due: dict[tuple[int, int], float] = {}
        while lb_id in self.load_balancers:
            lb = self.load_balancers[lb_id]
            now = time.monotonic()
            checks = []
            for t in lb["targets"]:
                if t["type"] != "server":
                    continue
                sid = t["server"]["id"]
                for svc in lb["services"]:
                    key = (sid, svc["listen_port"])
                    if next_due.get(key, 0.0) <= now:
                        hc = svc["health_check"]
                        next_due[key] = now + hc["interval"] * self.speed
                        checks.append(self._check(lb_id, sid, svc))
            if checks:
                await asyncio.gather(*checks)
            await asyncio.sleep(min(0.25, 1.0 * self.speed))

    async def _check(self, lb_id: int, sid: int, svc: dict[str, Any]) -> None:
        hc = svc["health_check"]
        server = self.servers.get(sid)
        ok = False
        if server is not None:
            try:
                ok = await asyncio.wait_for(self.target_probe(server, hc["port"]), hc["timeout"] * self.speed)
            except (TimeoutError, OSError):
                ok = False
        key = (lb_id, sid, svc["listen_port"])
        state = self.health.setdefault(key, TargetHealth())
        before = state.status
        if ok:
            state.failures = 0
            state.status = "healthy"
        else:
            state.failures += 1
            if state.failures > hc["retries"] or state.status == "unknown":
                state.status = "unhealthy"
        if state.status != before:
            state.since = time.time()
            self.health_log.append(
                {
                    "at": state.since,
                    "load_balancer": lb_id,
                    "server": sid,
                    "listen_port": svc["listen_port"],
                    "status": state.status,
                }
            )
            self.emit(
                "target_health",
                {
                    "load_balancer": lb_id,
                    "server": sid,
                    "listen_port": svc["listen_port"],
                    "status": state.status,
                },
            )

    def mark_healthy(self, lb: dict[str, Any]) -> None:
        """Seeded targets start healthy, as on a cluster that has been up for months."""
        for t in lb["targets"]:
            for svc in lb["services"]:
                if self.servers[t["server"]["id"]]["status"] == "running":
                    self.health[(lb["id"], t["server"]["id"], svc["listen_port"])] = TargetHealth("healthy")
