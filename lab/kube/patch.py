"""PATCH bodies by content type, as the API server applies them.

* ``application/json-patch+json`` — RFC 6902 (the ``jsonpatch`` library); the body must be a JSON array.
* ``application/merge-patch+json`` — RFC 7386: objects merge, ``null`` deletes, lists are replaced.
* ``application/strategic-merge-patch+json`` — built-in kinds only (a custom resource gets 415, as on a
  real server).  Lists merge by their merge key where Kubernetes declares ``patchStrategy: merge``
  (:data:`MERGE_KEYS`, keyed by field name: the fields this console touches); every other list is
  replaced.  ``$patch: delete`` removes a keyed list item, ``$patch: replace`` replaces a map or list.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from lab.kube.errors import KubeError, bad_request, unsupported_media_type

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

# field name -> merge key (k8s.io/api struct tags `patchStrategy:"merge" patchMergeKey:"…"`).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "taints": "key",
    "topologySpreadConstraints": "topologyKey",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "secrets": "name",
}
# Primitive lists that merge as sets.
SET_LISTS = {"finalizers"}


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


def strategic_merge(target: Any, patch: Any, field: str = "") -> Any:
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        if patch.get("$patch") == "delete":
            return None
        out = dict(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if key.startswith("$"):
                continue
            if value is None:
                out.pop(key, None)
            else:
                merged = strategic_merge(out.get(key), value, key)
                if merged is None:
                    out.pop(key, None)
                else:
                    out[key] = merged
        return out
    if isinstance(patch, list):
        mkey = MERGE_KEYS.get(field)
        if field in SET_LISTS and isinstance(target, list):
            return [*target, *[v for v in patch if v not in target]]
        if mkey is None or not isinstance(target, list):
            if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
                return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
            return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and i.get("$patch"))]
        out_list = [copy.deepcopy(i) for i in target]
        for item in patch:
            if not isinstance(item, dict):
                raise bad_request(f"strategic merge patch: {field} items must be objects")
            if item.get("$patch") == "replace":
                return [copy.deepcopy(i) for i in patch if i is not item]
            idx = next(
                (
                    i
                    for i, cur in enumerate(out_list)
                    if isinstance(cur, dict) and cur.get(mkey) == item.get(mkey)
                ),
                None,
            )
            if item.get("$patch") == "delete":
                if idx is not None:
                    out_list.pop(idx)
                continue
            if idx is None:
                out_list.append(strategic_merge({}, item))
            else:
                out_list[idx] = strategic_merge(out_list[idx], item)
        return out_list
    return copy.deepcopy(patch)


def apply_patch(obj: dict[str, Any], body: Any, content_type: str, custom: bool) -> dict[str, Any]:
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
        result = strategic_merge(obj, body)
        assert isinstance(result, dict)
        return result
    raise unsupported_media_type(ctype)
