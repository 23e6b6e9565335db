"""Just enough of Kubernetes' protobuf wire format to read what kubectl sends as protobuf.

client-go sends a few built-in requests as ``application/vnd.kubernetes.protobuf`` (``kubectl auth
can-i``'s SelfSubjectAccessReview, ``kubectl drain``'s Eviction).  The body is the ``k8s\\0`` magic and a
``runtime.Unknown`` envelope whose ``raw`` field holds the object.  We decode the protobuf wire format
(varints and length-delimited fields) for the fields those requests carry; the answers go back as JSON,
which client-go accepts (it lists ``application/json`` in ``Accept``).
"""

from __future__ import annotations

from typing import Any

MAGIC = b"k8s\x00"


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def fields(buf: bytes) -> dict[int, list[Any]]:
    """Field number -> values (ints for varints, bytes for length-delimited)."""
    out: dict[int, list[Any]] = {}
    i = 0
    while i < len(buf):
        value: Any
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i : i + length], i + length
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.setdefault(num, []).append(value)
    return out


def unwrap(body: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, raw object bytes) from a ``k8s\\0`` envelope."""
    if not body.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf envelope")
    env = fields(body[len(MAGIC) :])
    type_meta = fields(env.get(1, [b""])[0])
    api_version = type_meta.get(1, [b""])[0].decode()
    kind = type_meta.get(2, [b""])[0].decode()
    return api_version, kind, env.get(2, [b""])[0]


def _s(f: dict[int, list[Any]], n: int) -> str:
    return f[n][0].decode() if n in f else ""


def self_subject_access_review(raw: bytes) -> dict[str, Any]:
    spec = fields(fields(raw).get(2, [b""])[0])
    attrs = fields(spec.get(1, [b""])[0]) if 1 in spec else {}
    resource = {
        k: _s(attrs, n)
        for k, n in (
            ("namespace", 1),
            ("verb", 2),
            ("group", 3),
            ("version", 4),
            ("resource", 5),
            ("subresource", 6),
            ("name", 7),
        )
    }
    return {"spec": {"resourceAttributes": {k: v for k, v in resource.items() if v}}}


def eviction(raw: bytes) -> dict[str, Any]:
    """policy/v1 Eviction: metadata=1, deleteOptions=2 (gracePeriodSeconds=1)."""
    f = fields(raw)
    out: dict[str, Any] = {}
    if 2 in f:
        opts = fields(f[2][0])
        if 1 in opts:
            out["deleteOptions"] = {"gracePeriodSeconds": opts[1][0]}
    return out


def object_meta(raw: bytes) -> dict[str, Any]:
    """ObjectMeta: name=1, generateName=2, namespace=3, labels=11, annotations=12, ownerReferences=13."""
    f = fields(raw)
    meta: dict[str, Any] = {
        k: _s(f, n) for k, n in (("name", 1), ("generateName", 2), ("namespace", 3)) if n in f
    }
    for key, n in (("labels", 11), ("annotations", 12)):
        if n in f:
            meta[key] = {_s(e, 1): _s(e, 2) for e in map(fields, f[n])}
    if 13 in f:
        meta["ownerReferences"] = [
            {
                "kind": _s(r, 1),
                "name": _s(r, 3),
                "uid": _s(r, 4),
                "apiVersion": _s(r, 5),
                **({"controller": bool(r[6][0])} if 6 in r else {}),
            }
            for r in map(fields, f[13])
        ]
    return meta


def job(raw: bytes) -> dict[str, Any]:
    """batch/v1 Job as ``kubectl create job --from=cronjob/…`` sends it: only the metadata is decoded; the
    API layer takes the spec from the owning CronJob's jobTemplate (which is what kubectl copied)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(fields(raw).get(1, [b""])[0]),
        "spec": None,
    }


def decode(body: bytes) -> dict[str, Any]:
    """The JSON-equivalent of a protobuf request body, for the kinds above; ValueError otherwise."""
    _, kind, raw = unwrap(body)
    if kind == "SelfSubjectAccessReview":
        return self_subject_access_review(raw)
    if kind == "Eviction":
        return eviction(raw)
    if kind == "Job":
        return job(raw)
    raise ValueError(f"protobuf bodies of kind {kind} are not understood by the lab")
