"""OpenAPI v3 documents per group-version, built from the schemas the twin validates with.

kubectl reads them before ``apply``/``create``: it looks for a PATCH operation tagged with the kind's
``x-kubernetes-group-version-kind`` that takes the ``fieldValidation`` query parameter, and if found
leaves validation to the server (which the twin does, strictly).  Schemas come from
``kubernetes-validate`` (built-in kinds, references rewritten to ``#/components/schemas``) and from the
CRDs' ``openAPIV3Schema``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from lab.kube.resources import Registry, Resource
from lab.kube.schema import def_name
from lab.kube.validation import _schema_dir


@lru_cache(maxsize=1)
def _definitions() -> dict[str, Any]:
    text = (_schema_dir(False) / "_definitions.json").read_text()
    text = text.replace("/api/_definitions.json#/$defs/", "#/components/schemas/").replace(
        "#/$defs/", "#/components/schemas/"
    )
    defs: dict[str, Any] = _openapi3_types(json.loads(text)["$defs"])
    return defs


def _openapi3_types(node: Any) -> Any:
    """JSON-Schema ``type: [T, "null"]`` back to OpenAPI 3.0's ``type: T, nullable: true``."""
    if isinstance(node, list):
        return [_openapi3_types(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi3_types(v) for k, v in node.items()}
    t = out.get("type")
    if isinstance(t, list):
        rest = [x for x in t if x != "null"]
        if len(rest) == 1:
            out["type"] = rest[0]
        else:
            out.pop("type")
        if "null" in t:
            out["nullable"] = True
    return out


def _reachable(defs: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in out or name not in defs:
            continue
        out[name] = defs[name]
        text = json.dumps(defs[name])
        start = 0
        while (i := text.find("#/components/schemas/", start)) >= 0:
            end = text.find('"', i)
            todo.append(text[i + len("#/components/schemas/") : end])
            start = end
    return out


def _ops(res: Resource, schema_ref: str, collection: bool) -> dict[str, Any]:
    gvk = {"group": res.group, "version": res.version, "kind": res.kind}
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": schema_ref}}}}}
    field_validation = {
        "name": "fieldValidation",
        "in": "query",
        "schema": {"type": "string", "uniqueItems": True},
    }
    dry_run = {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}}

    def op(action: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "operationId": f"{action}{res.kind}",
            "parameters": params,
            "responses": ok,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        }

    if collection:
        return {"get": op("list", []), "post": op("post", [field_validation, dry_run])}
    return {
        "get": op("get", []),
        "put": op("put", [field_validation, dry_run]),
        "patch": op("patch", [field_validation, dry_run]),
        "delete": op("delete", [dry_run]),
    }


def group_version_document(registry: Registry, tail: str) -> dict[str, Any] | None:
    """The document for ``api/v1`` or ``apis/G/V``; None when no such group-version is served."""
    parts = tail.strip("/").split("/")
    if parts[0] == "api" and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[0] == "apis" and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    resources = registry.in_group_version(group, version)
    if not resources:
        return None
    defs = _definitions()
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    for res in resources:
        name = def_name(res)
        if res.crd is not None:
            crd_version = next(v for v in res.crd["spec"]["versions"] if v["name"] == res.version)
            schema = dict(crd_version.get("schema", {}).get("openAPIV3Schema") or {"type": "object"})
            name = f"{'.'.join(reversed(res.group.split('.')))}.{res.version}.{res.kind}"
            schemas[name] = schema
        else:
            schemas.update(_reachable(defs, [name]))
            if name not in schemas:
                continue
            schemas[name] = dict(schemas[name])
        schemas[name]["x-kubernetes-group-version-kind"] = [
            {"group": res.group, "version": res.version, "kind": res.kind}
        ]
        ref = f"#/components/schemas/{name}"
        base = (
            f"{prefix}/namespaces/{{namespace}}/{res.plural}" if res.namespaced else f"{prefix}/{res.plural}"
        )
        paths[base] = _ops(res, ref, collection=True)
        paths[f"{base}/{{name}}"] = _ops(res, ref, collection=False)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.34.4+k3s1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
