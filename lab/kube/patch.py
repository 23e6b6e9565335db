"""PATCH bodies by content type, as the API server applies them.

* ``application/json-patch+json`` — RFC 6902 (the ``jsonpatch`` library); the body must be a JSON array.
* ``application/merge-patch+json`` — RFC 7386: objects merge, ``null`` deletes, lists are replaced.
* ``application/strategic-merge-patch+json`` — built-in kinds only (a custom resource gets 415, as on a
  real server).  How each list merges comes from the kind's schema (:mod:`lab.kube.schema`): a list whose
  field declares ``x-kubernetes-patch-strategy: merge`` merges — lists of objects on the field's
  ``x-kubernetes-patch-merge-key`` (``port`` for a Service's ports, ``containerPort`` for a container's),
  lists of scalars as sets (``finalizers``); every other list is replaced.  The directives kubectl sends
  are honoured: ``$patch: delete|replace|merge``, ``$retainKeys`` (fields with the ``retainKeys``
  strategy), ``$setElementOrder/FIELD`` and ``$deleteFromPrimitiveList/FIELD``.
* ``application/apply-patch+yaml`` — server-side apply (:mod:`lab.kube.apply`), handled by the API layer.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from lab.kube.errors import KubeError, bad_request, unsupported_media_type
from lab.kube.schema import UNKNOWN, Field

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
ORDER = "$setElementOrder/"
DELETE_FROM = "$deleteFromPrimitiveList/"


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def strategic_merge(target: Any, patch: Any, schema: Field = UNKNOWN) -> Any:
    """``patch`` merged into ``target`` at the position ``schema`` describes (None: delete it)."""
    if isinstance(patch, dict):
        return _merge_map(target, patch, schema)
    if isinstance(patch, list):
        return _merge_list(target, patch, schema)
    return copy.deepcopy(patch)


def _merge_map(target: Any, patch: dict[str, Any], schema: Field) -> Any:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise bad_request(f"Unknown patch type: {directive!r}")
    out = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    if retain is not None:
        if not isinstance(retain, list):
            raise bad_request("$retainKeys must be a list of field names")
        out = {k: v for k, v in out.items() if k in retain}
    for key, value in patch.items():
        if key.startswith(DELETE_FROM):
            name = key[len(DELETE_FROM) :]
            if isinstance(out.get(name), list) and isinstance(value, list):
                out[name] = [v for v in out[name] if v not in value]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
            continue
        merged = strategic_merge(out.get(key), value, schema.child(key))
        if merged is None:
            out.pop(key, None)
        else:
            out[key] = merged
    for key, order in patch.items():
        if key.startswith(ORDER) and isinstance(out.get(key[len(ORDER) :]), list):
            name = key[len(ORDER) :]
            out[name] = _ordered(out[name], order, schema.child(name).patch_merge_key)
    return out


def _merge_list(target: Any, patch: list[Any], schema: Field) -> list[Any]:
    replace = any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch)
    items = [i for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    if replace or "merge" not in schema.patch_strategies or not isinstance(target, list):
        return [copy.deepcopy(i) for i in items if not (isinstance(i, dict) and i.get("$patch"))]
    key = schema.patch_merge_key
    if key is None:  # scalars merged as a set (finalizers)
        return [*target, *[copy.deepcopy(v) for v in items if v not in target]]
    out = [copy.deepcopy(i) for i in target]
    for item in items:
        if not isinstance(item, dict):
            raise bad_request(f"strategic merge patch: the items of a list merged on {key!r} must be objects")
        if key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {key}")
        idx = next(
            (i for i, cur in enumerate(out) if isinstance(cur, dict) and cur.get(key) == item[key]), None
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        merged = strategic_merge(out[idx] if idx is not None else {}, item, schema.item())
        if idx is None:
            out.append(merged)
        else:
            out[idx] = merged
    return out


def _ordered(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    """``$setElementOrder``: the listed items in the listed order, the rest after them as they were."""

    def ident(v: Any) -> Any:
        return v.get(key) if key and isinstance(v, dict) else v

    wanted = [ident(o) for o in order]
    rank = {repr(w): i for i, w in enumerate(wanted)}
    return sorted(items, key=lambda v: rank.get(repr(ident(v)), len(rank)))


def apply_patch(
    obj: dict[str, Any], body: Any, content_type: str, schema: Field, custom: bool
) -> dict[str, Any]:
    """Return the patched copy of ``obj``; raise the API server's errors for unacceptable patches."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == JSON_PATCH:
        if not isinstance(body, list):
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        try:
            result = jsonpatch.apply_patch(obj, body)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
            raise KubeError(
                422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
            ) from None
        if not isinstance(result, dict):
            raise bad_request("json patch produced a non-object")
        return result
    if ctype == MERGE_PATCH:
        if not isinstance(body, dict):
            raise bad_request("merge patch body must be a JSON object")
        result = merge_patch(obj, body)
        assert isinstance(result, dict)
        return result
    if ctype == STRATEGIC:
        if custom:
            raise unsupported_media_type(ctype)
        if not isinstance(body, dict):
            raise bad_request("strategic merge patch body must be a JSON object")
        result = strategic_merge(obj, body, schema)
        assert isinstance(result, dict)
        return result
    raise unsupported_media_type(ctype)
