"""The read-only catalogue every Hetzner project sees: locations, datacenters, server, image and LB types.

IDs and names follow the public API (fsn1=1, nbg1=2, hel1=3, cax11=45 …) so scripts that hard-code them
behave the same against the lab.  Prices are plausible list prices, not a quote.
"""

from __future__ import annotations

from typing import Any

CREATED = "2016-01-30T23:50:00+00:00"

LOCATIONS: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "fsn1",
        "description": "Falkenstein DC Park 1",
        "country": "DE",
        "city": "Falkenstein",
        "latitude": 50.47612,
        "longitude": 12.370071,
        "network_zone": "eu-central",
    },
    {
        "id": 2,
        "name": "nbg1",
        "description": "Nuremberg DC Park 1",
        "country": "DE",
        "city": "Nuremberg",
        "latitude": 49.452102,
        "longitude": 11.076665,
        "network_zone": "eu-central",
    },
    {
        "id": 3,
        "name": "hel1",
        "description": "Helsinki DC Park 1",
        "country": "FI",
        "city": "Helsinki",
        "latitude": 60.169855,
        "longitude": 24.938379,
        "network_zone": "eu-central",
    },
]


def _price(location: str, hourly: str, monthly: str, traffic: int) -> dict[str, Any]:
    def p(v: str) -> dict[str, str]:
        return {"net": v, "gross": f"{float(v) * 1.19:.10f}"}

    return {
        "location": location,
        "price_hourly": p(hourly),
        "price_monthly": p(monthly),
        "included_traffic": traffic,
        "price_per_tb_traffic": p("1.0000000000"),
    }


def _server_type(
    tid: int, name: str, cores: int, memory: float, disk: int, arch: str, cpu: str, hourly: str, monthly: str
) -> dict[str, Any]:
    return {
        "id": tid,
        "name": name,
        "description": name.upper(),
        "category": "cost_optimized",
        "cores": cores,
        "memory": memory,
        "disk": disk,
        "deprecated": False,
        "deprecation": None,
        "prices": [_price(loc["name"], hourly, monthly, 21990232555520) for loc in LOCATIONS],
        "storage_type": "local",
        "cpu_type": cpu,
        "architecture": arch,
        # `available`/`recommended` are newer than the shared spec; hcloud-python 2.x requires them.
        "locations": [
            {
                "id": loc["id"],
                "name": loc["name"],
                "deprecation": None,
                "available": True,
                "recommended": True,
            }
            for loc in LOCATIONS
        ],
    }


SERVER_TYPES: list[dict[str, Any]] = [
    _server_type(45, "cax11", 2, 4, 40, "arm", "shared", "0.0064000000", "3.9900000000"),
    _server_type(93, "cax21", 4, 8, 80, "arm", "shared", "0.0104000000", "6.4900000000"),
    _server_type(94, "cax31", 8, 16, 160, "arm", "shared", "0.0200000000", "12.4900000000"),
    _server_type(22, "cpx11", 2, 2, 40, "x86", "shared", "0.0072000000", "4.4900000000"),
    _server_type(104, "cx22", 2, 4, 40, "x86", "shared", "0.0060000000", "3.7900000000"),
]

DATACENTERS: list[dict[str, Any]] = [
    {
        "id": i,
        "name": f"{loc['name']}-dc{dc}",
        "description": f"{loc['city']} DC Park 1 dc{dc}",
        "location": loc,
        "server_types": {
            "supported": [t["id"] for t in SERVER_TYPES],
            "available": [t["id"] for t in SERVER_TYPES],
            "available_for_migration": [t["id"] for t in SERVER_TYPES],
        },
    }
    for i, loc, dc in ((4, LOCATIONS[0], 14), (2, LOCATIONS[1], 3), (3, LOCATIONS[2], 2))
]


def _image(iid: int, name: str, flavor: str, version: str, arch: str) -> dict[str, Any]:
    return {
        "id": iid,
        "type": "system",
        "status": "available",
        "name": name,
        "description": f"{flavor.capitalize()} {version}",
        "image_size": None,
        "disk_size": 5,
        "created": "2024-04-25T00:00:00+00:00",
        "created_from": None,
        "bound_to": None,
        "os_flavor": flavor,
        "os_version": version,
        "rapid_deploy": True,
        "protection": {"delete": False},
        "deprecated": None,
        "deleted": None,
        "labels": {},
        "architecture": arch,
    }


IMAGES: list[dict[str, Any]] = [
    _image(161547269, "ubuntu-24.04", "ubuntu", "24.04", "x86"),
    _image(161547270, "ubuntu-24.04", "ubuntu", "24.04", "arm"),
    _image(114690387, "debian-12", "debian", "12", "x86"),
    _image(114690389, "debian-12", "debian", "12", "arm"),
]

LOAD_BALANCER_TYPES: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "lb11",
        "description": "LB11",
        "max_connections": 10000,
        "max_services": 5,
        "max_targets": 25,
        "max_assigned_certificates": 10,
        "deprecated": None,
        "prices": [_price(loc["name"], "0.0082000000", "5.3900000000", 21990232555520) for loc in LOCATIONS],
    },
    {
        "id": 2,
        "name": "lb21",
        "description": "LB21",
        "max_connections": 20000,
        "max_services": 15,
        "max_targets": 75,
        "max_assigned_certificates": 25,
        "deprecated": None,
        "prices": [_price(loc["name"], "0.0290000000", "17.9900000000", 21990232555520) for loc in LOCATIONS],
    },
]


def by_id_or_name(items: list[dict[str, Any]], ref: object, **match: object) -> dict[str, Any] | None:
    """Resolve an API reference that may be an ID (int or digit string) or a name, as the real API does."""
    if isinstance(ref, dict):
        ref = ref.get("id", ref.get("name"))
    for item in items:
        if any(item.get(k) != v for k, v in match.items()):
            continue
        if (isinstance(ref, int) and item["id"] == ref) or (
            isinstance(ref, str) and (item.get("name") == ref or (ref.isdigit() and item["id"] == int(ref)))
        ):
            return item
    return None
