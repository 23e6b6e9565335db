"""Where a field sits in its kind's schema, and how the API server merges it there.

The real API server takes a field's merge behaviour from the schema it publishes, never from the field's
name: strategic merge patch reads ``x-kubernetes-patch-strategy`` and ``x-kubernetes-patch-merge-key``;
server-side apply reads ``x-kubernetes-list-type``, ``x-kubernetes-list-map-keys`` and
``x-kubernetes-map-type``.  The twin reads the same extensions from the same schemas it validates with and
serves as OpenAPI (``kubernetes-validate``'s 1.34 definitions for built-in kinds, the CRD's
``openAPIV3Schema`` for custom ones), so one ``ports`` list merges on ``port`` in a Service and on
``containerPort`` in a container.

A :class:`Field` is one position: the schema node of the property (where the extensions are written, next
to a ``$ref``) joined with the node it refers to (where the structure is).  Positions the schema does not
describe (``x-kubernetes-preserve-unknown-fields``, an unknown field) are :data:`UNKNOWN`: maps merge
field by field, lists are atomic — structured-merge-diff's "deduced" type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from lab.kube.resources import Resource
from lab.kube.validation import _schema_dir

DEF_PREFIX = "#/$defs/"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@lru_cache(maxsize=1)
def definitions() -> dict[str, Any]:
    defs: dict[str, Any] = json.loads((_schema_dir(False) / "_definitions.json").read_text())["$defs"]
    return defs


def _types(node: dict[str, Any]) -> set[str]:
    t = node.get("type")
    if isinstance(t, list):
        return {x for x in t if x != "null"}
    return {t} if isinstance(t, str) else set()


@dataclass(frozen=True)
class Field:
    """One position in a schema: the property node (extensions) over the resolved node (structure)."""

    prop: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    node: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @staticmethod
    def of(prop: dict[str, Any] | None) -> Field:
        if not prop:
            return UNKNOWN
        node = prop
        seen = 0
        while "$ref" in node and seen < 20:  # a property is a reference with extensions beside it
            ref = node["$ref"]
            node = definitions().get(ref[len(DEF_PREFIX) :], {}) if ref.startswith(DEF_PREFIX) else {}
            seen += 1
        if "allOf" in node and len(node["allOf"]) == 1:
            node = {**node, **Field.of(node["allOf"][0]).node}
        return Field(prop, node)

    def ext(self, name: str) -> Any:
        return self.prop.get(name, self.node.get(name))

    @property
    def known(self) -> bool:
        return bool(self.node) and not (
            self.ext("x-kubernetes-preserve-unknown-fields") and "properties" not in self.node
        )

    @property
    def is_struct(self) -> bool:
        """An object with declared fields (a Go struct), as opposed to a map of arbitrary keys."""
        return "properties" in self.node

    @property
    def is_list(self) -> bool:
        return "array" in _types(self.node) or "items" in self.node

    def child(self, name: str) -> Field:
        props = self.node.get("properties") or {}
        if name in props:
            return Field.of(props[name])
        extra = self.node.get("additionalProperties")
        if isinstance(extra, dict):
            return Field.of(extra)
        return UNKNOWN

    def item(self) -> Field:
        items = self.node.get("items")
        return Field.of(items) if isinstance(items, dict) else UNKNOWN

    def declares(self, name: str) -> bool:
        return name in (self.node.get("properties") or {})

    # ---- strategic merge patch ---------------------------------------------------------------------

    @property
    def patch_strategies(self) -> set[str]:
        raw = self.ext("x-kubernetes-patch-strategy") or ""
        return {s.strip() for s in str(raw).split(",") if s.strip()}

    @property
    def patch_merge_key(self) -> str | None:
        key = self.ext("x-kubernetes-patch-merge-key")
        return str(key) if key else None

    # ---- server-side apply -------------------------------------------------------------------------

    @property
    def list_type(self) -> str:
        """``atomic``, ``set`` or ``map`` — a list with a merge strategy and key and no list type is an
        associative list on that key, as kube-openapi's schema conversion reads it."""
        declared = self.ext("x-kubernetes-list-type")
        if declared:
            return str(declared)
        if "merge" in self.patch_strategies:
            return "map" if self.patch_merge_key else "set"
        return "atomic"

    @property
    def list_keys(self) -> tuple[str, ...]:
        keys = self.ext("x-kubernetes-list-map-keys")
        if keys:
            return tuple(keys)
        key = self.patch_merge_key
        return (key,) if key else ()

    @property
    def map_atomic(self) -> bool:
        return (
            self.ext("x-kubernetes-map-type") == "atomic"
            or self.ext("x-kubernetes-embedded-resource") is True
        )


UNKNOWN = Field()


def def_name(res: Resource) -> str:
    packages = {
        "": "io.k8s.api.core",
        "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
        "apiregistration.k8s.io": "io.k8s.kube-aggregator.pkg.apis.apiregistration",
    }
    pkg = packages.get(res.group, f"io.k8s.api.{res.group.split('.')[0]}")
    return f"{pkg}.{res.version}.{res.kind}"


def root(res: Resource) -> Field:
    """The schema of ``res``'s objects: its CRD's for a custom resource, the published one otherwise."""
    if res.crd is not None:
        version: dict[str, Any] = next(
            (v for v in res.crd["spec"]["versions"] if v["name"] == res.version), {}
        )
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not schema:
            return UNKNOWN
        # Every object's metadata is ObjectMeta, whatever the CRD writes there (``type: object`` mostly).
        props = {**(schema.get("properties") or {}), "metadata": {"$ref": DEF_PREFIX + OBJECT_META}}
        return Field.of({**schema, "properties": props})
    node = definitions().get(def_name(res))
    return Field.of(node) if node else UNKNOWN
