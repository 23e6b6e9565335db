"""Field ownership: ``metadata.managedFields`` and server-side apply, as the API server's field manager.

Every write through the API records who set what (one mechanism, :class:`FieldManager`):

* an **Update** (create, PUT, any non-apply PATCH, by the ``fieldManager`` parameter or the user agent's
  first word) takes the fields it added or changed from everyone else, with no conflict;
* an **Apply** (``PATCH`` as ``application/apply-patch+yaml``: ``kubectl apply --server-side``) merges
  its configuration into the live object by the schema (:mod:`lab.kube.schema`: associative lists by
  their keys, in structured-merge-diff's order), owns exactly the fields it sent, removes the fields it
  owned before and no longer sends (unless someone else owns them), and is refused with ``409 Conflict``
  naming each other manager and field whose value it would change — unless ``force=true``, which takes
  them.  An object with no managedFields yet is first owned whole by ``before-first-apply``.  Applying to
  a missing object creates it (201).

Simpler than the real field manager (lab/README.md): no version conversion (one version per kind), no
cap on Update managers, the ``kubectl`` manager's hand-over from client-side apply is taken from the
last-applied annotation only, the status and controllers' own writes (which go to the store directly)
are not recorded, and ``.`` entries of Update operations appear for list items and maps, not for the
Go pointer structs the real server also marks.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from lab.kube import fieldsets
from lab.kube.errors import KubeError, bad_request
from lab.kube.fieldsets import Path
from lab.kube.resources import Resource
from lab.kube.schema import Field, root
from lab.kube.store import now_iso

Obj = dict[str, Any]
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
BEFORE_FIRST_APPLY = "before-first-apply"


@dataclass
class Entry:
    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    fields: set[Path]
    time: str | None = None
    subresource: str = ""

    def ident(self) -> tuple[str, str, str, str]:
        """One Apply entry per (manager, subresource); one Update entry per (manager, version, sub)."""
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def label(self) -> str:
        """How a conflict names the manager."""
        out = f'"{self.manager}"'
        if self.subresource:
            out += f' with subresource "{self.subresource}"'
        if self.operation == "Update":
            out += f" using {self.api_version}"
        return out

    def encode(self) -> Obj:
        out: Obj = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version}
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = fieldsets.encode(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def decode(raw: Any) -> list[Entry]:
    """The entries of a ``managedFields`` list; ValueError when it is not one."""
    if not isinstance(raw, list):
        raise ValueError("managedFields must be a list")
    out = []
    for e in raw:
        if not isinstance(e, dict) or e.get("fieldsType", "FieldsV1") != "FieldsV1":
            raise ValueError("managedFields entries are FieldsV1 objects")
        if e.get("operation") not in ("Apply", "Update"):
            raise ValueError(f"unknown operation {e.get('operation')!r}")
        out.append(
            Entry(
                str(e.get("manager") or "unknown"),
                str(e["operation"]),
                str(e.get("apiVersion") or ""),
                fieldsets.decode(e.get("fieldsV1") or {}),
                _utc(e.get("time")),
                str(e.get("subresource") or ""),
            )
        )
    return out


def _utc(stamp: Any) -> str | None:
    """A client may send a time back as ``+00:00`` (Python's isoformat); the server writes ``Z``."""
    if not stamp:
        return None
    text = str(stamp)
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _sorted(entries: list[Entry]) -> list[Entry]:
    return sorted(
        (e for e in entries if e.fields),
        key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource),
    )


def _status_mode(res: Resource, subresource: str) -> str:
    if subresource == "status":
        return "only"
    return "drop" if "status" in res.subresources else ""


def _without_managed(obj: Obj) -> Obj:
    meta = {
        k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("managedFields", "resourceVersion")
    }
    return {**obj, "metadata": meta}


class FieldManager:
    """Keeps ``metadata.managedFields`` for every API write of one resource."""

    def __init__(self, res: Resource) -> None:
        self.res = res
        self.schema: Field = root(res)

    # ---- updates ------------------------------------------------------------------------------------

    def _base(self, live: Obj | None, new: Obj) -> list[Entry]:
        """The entries a write starts from: the request's own when it carries valid ones (a client that
        edits ownership, as kubectl does when it moves an object to server-side apply), none when it
        resets them (``[]`` or ``[{}]``), else the live object's."""
        sent = (new.get("metadata") or {}).get("managedFields")
        if sent == [] or sent == [{}]:
            return []
        if sent:
            try:
                entries = decode(sent)
                if any(e.fields for e in entries):
                    return entries
            except (ValueError, KeyError, TypeError):
                pass
        try:
            return decode(((live or {}).get("metadata") or {}).get("managedFields") or [])
        except (ValueError, KeyError, TypeError):
            return []

    def update(self, live: Obj | None, new: Obj, manager: str, subresource: str = "") -> None:
        """Record an Update by ``manager`` in ``new`` (in place): it takes what it added or changed."""
        entries = self._base(live, new)
        mode = _status_mode(self.res, subresource)
        try:
            cmp = fieldsets.compare(live or {}, new, self.schema, mode)
        except fieldsets.SchemaError as exc:
            raise bad_request(str(exc)) from None
        taken = cmp.changed | cmp.removed
        mine = Entry(manager or "unknown", "Update", self.res.group_version, set(), None, subresource)
        for e in entries:
            if e.ident() == mine.ident():
                mine = e
            else:
                e.fields -= taken
        before = set(mine.fields)
        mine.fields = (mine.fields - cmp.removed) | cmp.changed
        if mine.fields != before or cmp.changed:
            mine.time = now_iso()
        if mine not in entries:
            entries.append(mine)
        self._write(live, new, entries)

    def _write(self, live: Obj | None, new: Obj, entries: list[Entry]) -> None:
        encoded = [e.encode() for e in _sorted(entries)]
        old = ((live or {}).get("metadata") or {}).get("managedFields")
        unchanged = live is not None and _without_managed(live) == _without_managed(new)
        if unchanged and old is not None and _same_sets(old, encoded):
            encoded = old  # a no-op write stays one: ownership unchanged, timestamps too
        meta = new.setdefault("metadata", {})
        if encoded:
            meta["managedFields"] = encoded
        else:
            meta.pop("managedFields", None)

    # ---- apply --------------------------------------------------------------------------------------

    def apply(self, live: Obj | None, config: Obj, manager: str, force: bool, subresource: str = "") -> Obj:
        """The object after ``manager`` applied ``config`` to ``live`` (None: a create), with its
        managedFields; :class:`KubeError` for a conflict or a configuration its schema refuses."""
        try:
            return self._apply(
                copy.deepcopy(live) if live is not None else None, config, manager, force, subresource
            )
        except fieldsets.SchemaError as exc:
            meta = config.get("metadata") or {}
            where = f"{meta.get('namespace', '')}/{meta.get('name', '')}".lstrip("/")
            raise KubeError(
                500,
                "InternalError",
                f"failed to create typed patch object ({where}; {self.res.group_version}, "
                f"Kind={self.res.kind}): {exc}",
            ) from None

    def _apply(self, live: Obj | None, config: Obj, manager: str, force: bool, subresource: str) -> Obj:
        mode = _status_mode(self.res, subresource)
        applied = fieldsets.field_set(config, self.schema, mode)
        base = live or {}
        entries = self._base(live, base)
        if live is not None and not entries:  # ownership starts here: everything so far is someone's
            first = Entry(BEFORE_FIRST_APPLY, "Update", self.res.group_version, set(), now_iso())
            first.fields = fieldsets.compare({}, base, self.schema, mode).changed
            entries = [first] if first.fields else []
        mine = next(
            (e for e in entries if e.ident() == (manager, "Apply", "", subresource)),
            Entry(manager, "Apply", self.res.group_version, set(), None, subresource),
        )
        others = [e for e in entries if e is not mine]
        merged = merge(base, config, self.schema)
        if not isinstance(merged, dict):
            merged = {}
        self._prune(merged, mine.fields - applied, applied, others)
        cmp = fieldsets.compare(base, merged, self.schema, mode)
        conflicts = {id(e): e.fields & cmp.changed for e in others}
        conflicts = {k: v for k, v in conflicts.items() if v}
        if conflicts and manager == "kubectl":
            conflicts = self._handed_over(live, conflicts)
        if conflicts and not force:
            raise apply_conflict([(e, conflicts[id(e)]) for e in others if id(e) in conflicts])
        for e in others:
            e.fields -= conflicts.get(id(e), set()) | cmp.removed
        changed = live is None or _without_managed(base) != _without_managed(merged)
        mine.fields = applied
        if changed:
            mine.time = now_iso()
        annotations = (merged.get("metadata") or {}).get("annotations") or {}
        if manager == "kubectl" and live is not None and LAST_APPLIED in annotations:
            # kubectl's client-side record follows what it now applies server-side
            sent = copy.deepcopy(config)
            (sent.get("metadata") or {}).get("annotations", {}).pop(LAST_APPLIED, None)
            annotations[LAST_APPLIED] = json.dumps(sent, separators=(",", ":")) + "\n"
        self._write(live, merged, [*others, mine])
        return merged

    def _prune(self, obj: Obj, dropped: set[Path], applied: set[Path], others: list[Entry]) -> None:
        """Remove what the applier owned before, sends no more, and nobody else owns — never a list item
        or map that still holds a field someone owns."""
        owned = set(applied).union(*(e.fields for e in others)) if others else set(applied)
        for path in sorted(dropped, key=len):  # an item before its fields: once it is gone, so are they
            if path in owned or any(p[: len(path)] == path for p in owned if len(p) > len(path)):
                continue
            fieldsets.remove(obj, path)

    def _handed_over(self, live: Obj | None, conflicts: dict[int, set[Path]]) -> dict[int, set[Path]]:
        """``kubectl`` taking over from client-side apply: no conflict on a field its last-applied
        annotation already set to the live value."""
        raw = (((live or {}).get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
        if not raw:
            return conflicts
        try:
            last = json.loads(raw)
        except ValueError:
            return conflicts
        kept = {}
        for key, paths in conflicts.items():
            left = {
                p
                for p in paths
                if not (fieldsets.get(last, p)[0] and fieldsets.get(last, p) == fieldsets.get(live, p))
            }
            if left:
                kept[key] = left
        return kept


def _same_sets(a: list[Obj], b: list[Obj]) -> bool:
    def key(entries: list[Obj]) -> list[tuple[Any, ...]]:
        return sorted(
            (
                e.get("manager"),
                e.get("operation"),
                e.get("apiVersion"),
                e.get("subresource"),
                json.dumps(e.get("fieldsV1"), sort_keys=True),
            )
            for e in entries
        )

    return key(a) == key(b)


def apply_conflict(found: list[tuple[Entry, set[Path]]]) -> KubeError:
    """409 as the field manager words it: one conflict on a line, several listed by manager."""
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {e.label()}",
            "field": fieldsets.render(p),
        }
        for e, paths in found
        for p in sorted(paths, key=fieldsets.render)
    ]
    if len(causes) == 1:
        message = f"Apply failed with 1 conflict: {causes[0]['message']}: {causes[0]['field']}"
    else:
        parts = []
        for e, paths in found:
            parts.append(f"conflicts with {e.label()}:")
            parts += [f"- {fieldsets.render(p)}" for p in sorted(paths, key=fieldsets.render)]
        message = f"Apply failed with {len(causes)} conflicts: " + "\n".join(parts)
    return KubeError(409, "Conflict", message, {"causes": causes})


# ---- merging a configuration into a live object -------------------------------------------------------


def merge(live: Any, config: Any, schema: Field) -> Any:
    """``config`` applied over ``live`` (structured-merge-diff's merge): scalars and atomic values from
    the config, maps field by field, associative lists item by item in the merged order."""
    if isinstance(config, dict) and isinstance(live, dict) and not schema.map_atomic:
        out = dict(live)
        for key, value in config.items():
            if value is None:  # null in a configuration: the field is unset (no Go object holds null)
                out.pop(key, None)
            else:
                out[key] = merge(live.get(key), value, schema.child(key))
        return out
    if isinstance(config, list) and isinstance(live, list) and schema.known and schema.list_type != "atomic":
        return _merge_list(live, config, schema)
    return copy.deepcopy(config)


def _merge_list(lhs: list[Any], rhs: list[Any], schema: Field) -> list[Any]:
    """Ported from structured-merge-diff's ``visitListItems``: the config's items in its order, the live
    object's own items where they stood."""
    item_schema = schema.item()
    lpe = [fieldsets.item_element(i, schema) for i in lhs]
    rpe = [fieldsets.item_element(i, schema) for i in rhs]
    left = dict(zip(lpe, lhs, strict=True))
    right = dict(zip(rpe, rhs, strict=True))
    shared = [pe for pe in rpe if pe in left]
    next_shared = shared.pop(0) if shared else None
    merged_rhs: set[Any] = set()
    out: list[Any] = []
    li = ri = 0
    while li < len(lpe) or ri < len(rpe):
        if li < len(lpe) and ri < len(rpe):
            pe = lpe[li]
            if pe == rpe[ri]:
                merged_rhs.add(pe)
                out.append(merge(left[pe], right[pe], item_schema))
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in right and next_shared is not None and next_shared != pe:
                li += 1  # shared, but not the one wanted this round
                continue
        if li < len(lpe):
            pe = lpe[li]
            if pe not in right:
                out.append(copy.deepcopy(lhs[li]))
                li += 1
                continue
            if pe in merged_rhs:
                li += 1
        if ri < len(rpe):
            pe = rpe[ri]
            merged_rhs.add(pe)
            out.append(
                merge(left.get(pe), right[pe], item_schema) if pe in left else copy.deepcopy(right[pe])
            )
            ri += 1
            if next_shared is not None and next_shared == pe:
                next_shared = shared.pop(0) if shared else None
    return out
