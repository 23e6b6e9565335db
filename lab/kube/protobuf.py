"""Kubernetes' protobuf request bodies (``application/vnd.kubernetes.protobuf``), read as JSON objects.

client-go and kubectl send built-in kinds as protobuf: ``kubectl create namespace|deployment|service|
configmap|job --from=…``, ``kubectl auth can-i`` and ``whoami``, ``kubectl drain``'s evictions.  A body is
the ``k8s\\0`` magic and a ``runtime.Unknown`` envelope (apiVersion, kind, the object's bytes).  The
object is decoded with the field tables of the upstream Go types (``proto_fields.json``: for every
message of the served groups, field number -> JSON name, type, label, and whether a zero value is left
out of JSON as the type's ``omitempty`` does), taken from k8s.io/api, apimachinery and kube-aggregator
v0.34.9 (their ``generated.proto`` for numbers and types, the Go structs for pointer-ness and
``omitempty``).  The apimachinery value types come back in their JSON forms: Time and MicroTime as
RFC 3339, Quantity and IntOrString as themselves, RawExtension and FieldsV1 as the JSON they carry.
Answers go back as JSON, which client-go accepts (it lists ``*/*`` in ``Accept``).
"""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

MAGIC = b"k8s\x00"
META = "k8s.io.apimachinery.pkg.apis.meta.v1"
UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"
TYPE_META = "k8s.io.apimachinery.pkg.runtime.TypeMeta"
PACKAGES = {"apiregistration.k8s.io": "k8s.io.kube_aggregator.pkg.apis.apiregistration"}


@lru_cache(maxsize=1)
def messages() -> dict[str, dict[str, list[str]]]:
    table: dict[str, dict[str, list[str]]] = json.loads(
        (Path(__file__).with_name("proto_fields.json")).read_text()
    )
    return table


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) in order: ints for varints, bytes for the rest."""
    out: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(buf):
        value: Any
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            if i + length > len(buf):
                raise ValueError("truncated field")
            value, i = buf[i : i + length], i + length
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((num, wire, value))
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _scalar(kind: str, wire: int, value: Any) -> Any:
    if kind == "string":
        return bytes(value).decode()
    if kind == "bytes":
        return bytes(value)
    if kind == "bool":
        return bool(value)
    if kind == "double":
        return struct.unpack("<d", value)[0]
    if kind == "float":
        return struct.unpack("<f", value)[0]
    if wire == 0:
        return _signed(value) if kind in ("int32", "int64") else value
    return int.from_bytes(value, "little", signed=kind.startswith("s"))


def _packed(kind: str, raw: bytes) -> list[Any]:
    out, i = [], 0
    while i < len(raw):
        value, i = _varint(raw, i)
        out.append(_scalar(kind, 0, value))
    return out


def _timestamp(msg: dict[str, Any], micro: bool) -> str | None:
    seconds, nanos = int(msg.get("seconds", 0)), int(msg.get("nanos", 0))
    if not seconds and not nanos:
        return None
    when = datetime.fromtimestamp(seconds + nanos / 1e9, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def _duration(ns: int) -> str:
    """Go's ``time.Duration.String``, for the lengths a manifest states (whole units)."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{sign}{ns / size:g}{unit}"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".")
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{sign}{minutes}m{seconds}s"
    return f"{sign}{seconds}s"


def _special(name: str, msg: dict[str, Any]) -> Any:
    """The apimachinery value types as their JSON forms; ``msg`` decoded generically first."""
    if name == f"{META}.Time":
        return _timestamp(msg, micro=False)
    if name == f"{META}.MicroTime":
        return _timestamp(msg, micro=True)
    if name == f"{META}.Duration":
        return _duration(int(msg.get("duration", 0)))
    if name == "k8s.io.apimachinery.pkg.api.resource.Quantity":
        return msg.get("string", "")
    if name == "k8s.io.apimachinery.pkg.util.intstr.IntOrString":
        return msg.get("strVal", "") if msg.get("type") else int(msg.get("intVal", 0))
    if name in ("k8s.io.apimachinery.pkg.runtime.RawExtension", f"{META}.FieldsV1"):
        raw = msg.get("raw", msg.get("Raw", b""))
        return json.loads(raw) if raw else {}
    if name.endswith(".ExtraValue") or name == f"{META}.Verbs":
        return msg.get("items", [])
    return msg


def decode_message(name: str, buf: bytes) -> Any:
    """The JSON value of one message of type ``name``."""
    spec = messages().get(name)
    if spec is None:
        raise ValueError(f"protobuf message {name} is not known to the lab")
    out: dict[str, Any] = {}
    for num, wire, value in fields(buf):
        entry = spec.get(str(num))
        if entry is None:
            continue  # a field newer than the table: ignored, as an old server's decoder would
        field_name, kind, label = entry[0], entry[1], entry[2]
        if label == "m":
            pairs = dict((n, v) for n, _, v in fields(value))
            key = bytes(pairs.get(1, b"")).decode()
            raw = pairs.get(2, b"")
            scalar_wire = 2 if kind in ("string", "bytes") else 0
            out.setdefault(field_name, {})[key] = (
                decode_message(kind, raw) if kind in messages() else _scalar(kind, scalar_wire, raw)
            )
            continue
        if kind in messages():
            item = decode_message(kind, value)
        elif wire == 2 and kind not in ("string", "bytes"):
            items = _packed(kind, value)
            out.setdefault(field_name, []).extend(items)
            continue
        else:
            item = _scalar(kind, wire, value)
        if label == "r":
            out.setdefault(field_name, []).append(item)
        else:
            out[field_name] = item
    for entry in spec.values():  # Go's omitempty: a value-typed field's zero is not written
        if len(entry) > 3 and out.get(entry[0]) in ("", 0, False, None) and entry[0] in out:
            del out[entry[0]]
    for key in [k for k, v in out.items() if v is None]:
        del out[key]
    return _special(name, out)


def unwrap(body: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, raw object bytes) from a ``k8s\\0`` envelope."""
    if not body.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf envelope")
    env = {n: v for n, _, v in fields(body[len(MAGIC) :])}
    type_meta = {n: bytes(v).decode() for n, _, v in fields(env.get(1, b""))}
    return type_meta.get(1, ""), type_meta.get(2, ""), env.get(2, b"")


def message_name(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    package = PACKAGES.get(group, f"k8s.io.api.{group.split('.')[0] if group else 'core'}")
    return f"{package}.{version}.{kind}"


def decode(body: bytes) -> dict[str, Any]:
    """The JSON object a protobuf request body carries; ValueError when it is not one the lab knows."""
    api_version, kind, raw = unwrap(body)
    obj = decode_message(message_name(api_version, kind), raw)
    if not isinstance(obj, dict):
        raise ValueError(f"{kind} is not an object")
    return {"apiVersion": api_version, "kind": kind, **obj}
