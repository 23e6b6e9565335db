"""Sets of field paths, as server-side apply tracks who owns what (structured-merge-diff's ``fieldpath``).

A path is a tuple of elements: ``("f", name)`` a field, ``("k", ((key, json), …))`` an item of an
associative list by its key fields (sorted by name), ``("v", json)`` an item of a set.  How a value
turns into paths follows its schema (:mod:`lab.kube.schema`): scalars, atomic lists and atomic maps are
leaves; every item of an associative or set list is a member of its own (so ``k:…`` entries carry
``.``); a map's entries are members when the map is not a struct (labels, annotations, data) or when
their value is null or ``{}``.

* :func:`field_set` — the paths an applied configuration sets (``ToFieldSet``);
* :func:`compare` — what changed between two versions of an object (``Compare``): added, removed and
  modified leaves, plus list items and non-struct maps that appeared (an Update's ``.`` entries);
* :func:`encode` / :func:`decode` — the ``FieldsV1`` JSON of ``managedFields``;
* :func:`render` — a path as conflicts name it (``.spec.template.spec.containers[name="web"].image``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lab.kube.schema import Field

Element = tuple[str, Any]
Path = tuple[Element, ...]

# Never recorded: who owns these is not a question (fieldmanager's stripmeta).
STRIPPED = {("f", "apiVersion"), ("f", "kind")}
STRIPPED_META = {"name", "namespace", "creationTimestamp", "selfLink", "uid", "generation", "managedFields",
                 "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"}  # fmt: skip


class SchemaError(ValueError):
    """A value the schema does not allow (an undeclared field of a struct)."""


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# Key fields' defaults as the published schema declares them (``+default="TCP"``): an item that leaves
# its protocol out is the TCP item, so a port applied without one does not become a second entry.
KEY_DEFAULTS = {"protocol": "TCP"}


def item_element(item: Any, schema: Field) -> Element:
    """The path element naming one item of a non-atomic list."""
    if schema.list_type == "map":
        keys = schema.list_keys
        if not isinstance(item, dict):
            raise SchemaError(f"expected an object with keys {list(keys)}, got {_json(item)}")
        values = {k: item[k] if k in item else KEY_DEFAULTS.get(k) for k in keys}
        return ("k", tuple(sorted((k, _json(v)) for k, v in values.items() if v is not None)))
    return ("v", _json(item))


def _items(value: Any, schema: Field, path: Path) -> Iterable[tuple[Element, Any]]:
    seen: set[Element] = set()
    for item in value:
        pe = item_element(item, schema)
        if pe in seen:
            raise SchemaError(f"{render(path)}: duplicate entries for key {render((pe,))}")
        seen.add(pe)
        yield pe, item


@dataclass
class _Walk:
    """One walk over a value: its member paths, and (for :func:`compare`) each leaf's value and the
    containers that may be added whole."""

    leaves: dict[Path, Any] = field(default_factory=dict)
    members: set[Path] = field(default_factory=set)
    containers: set[Path] = field(default_factory=set)
    strict: bool = False

    def value(self, value: Any, schema: Field, path: Path) -> None:
        if isinstance(value, dict):
            if schema.map_atomic:
                self._leaf(path, value)
                return
            for key, v in value.items():
                pe: Path = (*path, ("f", key))
                declared = schema.declares(key)
                if (
                    self.strict
                    and schema.known
                    and schema.is_struct
                    and not declared
                    and not self._open(schema)
                ):
                    raise SchemaError(f"{render(pe)}: field not declared in schema")
                self.value(v, schema.child(key), pe)
                if v is None or v == {}:
                    self._leaf(pe, v)
                elif not declared:
                    self.members.add(pe)
                    if isinstance(v, dict):
                        self.containers.add(pe)
            if not schema.is_struct and path:
                self.containers.add(path)
            return
        if isinstance(value, list):
            if not schema.known or schema.list_type == "atomic":
                self._leaf(path, value)
                return
            try:
                items = list(_items(value, schema, path))
            except SchemaError:
                if self.strict:  # an applied configuration must name each item once
                    raise
                self._leaf(path, value)  # a stored object may not (env twice): owned as a whole
                return
            for pe_, item in items:
                p = (*path, pe_)
                self.value(item, schema.item(), p)
                self.members.add(p)
                self.containers.add(p)
                if not isinstance(item, (dict, list)):
                    self.leaves[p] = item
            return
        self._leaf(path, value)

    @staticmethod
    def _open(schema: Field) -> bool:
        extra = schema.node.get("additionalProperties")
        return bool(extra) or bool(schema.ext("x-kubernetes-preserve-unknown-fields"))

    def _leaf(self, path: Path, value: Any) -> None:
        if path:
            self.members.add(path)
            self.leaves[path] = value


def _strip(paths: Iterable[Path], status: str) -> set[Path]:
    """Drop what is never owned; ``status``: "drop" (main resource: the status is reset there), "only"
    (the status subresource), "" (a kind without one)."""
    out = set()
    for p in paths:
        if not p or p[0] in STRIPPED:
            continue
        if p[0] == ("f", "metadata") and (len(p) == 1 or p[1][1] in STRIPPED_META):
            continue
        top_is_status = p[0] == ("f", "status")
        if (status == "drop" and top_is_status) or (status == "only" and not top_is_status):
            continue
        out.add(p)
    return out


def field_set(value: dict[str, Any], schema: Field, status: str = "", strict: bool = True) -> set[Path]:
    """The paths an applied configuration sets; :class:`SchemaError` for a field its schema lacks."""
    walk = _Walk(strict=strict)
    walk.value(value, schema, ())
    return _strip(walk.members, status)


@dataclass
class Comparison:
    added: set[Path]
    removed: set[Path]
    modified: set[Path]

    @property
    def changed(self) -> set[Path]:
        return self.added | self.modified


def compare(old: dict[str, Any], new: dict[str, Any], schema: Field, status: str = "") -> Comparison:
    a, b = _Walk(), _Walk()
    a.value(old, schema, ())
    b.value(new, schema, ())
    added = (set(b.members) - set(a.members)) | (b.containers - a.containers)
    removed = (set(a.members) - set(b.members)) | (a.containers - b.containers)
    modified = {p for p, v in b.leaves.items() if p in a.leaves and a.leaves[p] != v}
    return Comparison(_strip(added, status), _strip(removed, status), _strip(modified, status))


# ---- FieldsV1 ---------------------------------------------------------------------------------------


def _key(pe: Element) -> str:
    kind, value = pe
    if kind == "f":
        return f"f:{value}"
    if kind == "k":
        return "k:{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in value) + "}"
    if kind == "v":
        return f"v:{value}"
    return f"i:{value}"


def _order(pe: Element) -> tuple[int, str]:
    return ("fkvi".index(pe[0]), _key(pe))


def encode(paths: set[Path]) -> dict[str, Any]:
    """``FieldsV1``: nested ``{"f:spec": {"f:replicas": {}}}``, ``"."`` where a member has children."""
    tree: dict[Element, Any] = {}
    for p in paths:
        node = tree
        for pe in p:
            node = node.setdefault(pe, {})
        node[(".", "")] = {}

    def out(node: dict[Element, Any]) -> dict[str, Any]:
        children = {k: v for k, v in node.items() if k[0] != "."}
        doc: dict[str, Any] = {}
        if (".", "") in node and children:
            doc["."] = {}
        for pe in sorted(children, key=_order):
            doc[_key(pe)] = out(children[pe])
        return doc

    return out(tree)


def _parse(key: str) -> Element:
    kind, _, rest = key.partition(":")
    if kind == "f":
        return ("f", rest)
    if kind == "k":
        return ("k", tuple(sorted((k, _json(v)) for k, v in json.loads(rest).items())))
    if kind == "v":
        return ("v", _json(json.loads(rest)))
    if kind == "i":
        return ("i", int(rest))
    raise ValueError(f"unknown path element {key!r}")


def decode(doc: dict[str, Any]) -> set[Path]:
    """The member paths of a ``FieldsV1`` document (ValueError when it is not one)."""
    out: set[Path] = set()

    def walk(node: Any, path: Path) -> None:
        if not isinstance(node, dict):
            raise ValueError("FieldsV1 nodes are objects")
        children = {k: v for k, v in node.items() if k != "."}
        if path and (not children or "." in node):
            out.add(path)
        for key, child in children.items():
            walk(child, (*path, _parse(key)))

    walk(doc, ())
    return out


def render(path: Path) -> str:
    """A path as the API server prints it in a conflict."""
    out = ""
    for kind, value in path:
        if kind == "f":
            out += f".{value}"
        elif kind == "k":
            out += "[" + ",".join(f"{k}={v}" for k, v in value) + "]"
        elif kind == "v":
            out += f"[={value}]"
        else:
            out += f"[{value}]"
    return out


def get(obj: Any, path: Path) -> tuple[bool, Any]:
    """(found, value) at ``path`` in ``obj``."""
    cur = obj
    for kind, value in path:
        if kind == "f" and isinstance(cur, dict) and value in cur:
            cur = cur[value]
        elif kind in "kv" and isinstance(cur, list):
            cur = next((i for i in cur if _matches(i, (kind, value))), _MISSING)
            if cur is _MISSING:
                return False, None
        else:
            return False, None
    return True, cur


_MISSING = object()


def _matches(item: Any, pe: Element) -> bool:
    kind, value = pe
    if kind == "k":
        return isinstance(item, dict) and all(_json(item.get(k, KEY_DEFAULTS.get(k))) == v for k, v in value)
    return bool(_json(item) == value)


def remove(obj: Any, path: Path) -> None:
    """Delete what ``path`` names in ``obj`` (a field, a list item), if it is there; a list or map it
    leaves empty goes too (Go's ``omitempty`` would not write it)."""
    if not path:
        return
    found, parent = get(obj, path[:-1])
    if not found:
        return
    kind, value = path[-1]
    if kind == "f" and isinstance(parent, dict) and value in parent:
        del parent[value]
    elif kind in "kv" and isinstance(parent, list):
        parent[:] = [i for i in parent if not _matches(i, (kind, value))]
    else:
        return
    if not parent and len(path) > 1 and path[-2][0] == "f":
        remove(obj, path[:-1])
