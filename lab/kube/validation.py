"""Schema validation of objects written through the API.

Built-in kinds use the JSON schemas shipped by ``kubernetes-validate`` for the seed's Kubernetes minor
version (the strict variant, which forbids unknown fields, when the request asks for
``fieldValidation=Strict`` as kubectl does by default).  Custom resources use their CRD's
``openAPIV3Schema`` converted to JSON Schema (``nullable``, ``x-kubernetes-int-or-string``; unknown fields
are refused only under ``Strict`` and where the schema does not preserve them).

Only API requests are validated; the lab's own controllers are trusted writers.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

K8S_MINOR = "1.34"


def _schema_dir(strict: bool) -> Path:
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    versions = sorted((p.name for p in base.iterdir() if p.name.startswith(f"v{K8S_MINOR}.")), reverse=True)
    name = next(v for v in versions if v.endswith("-strict") == strict)
    return base / name


@lru_cache(maxsize=2)
def _registry(strict: bool) -> Registry:
    defs = json.loads((_schema_dir(strict) / "_definitions.json").read_text())
    return Resource.from_contents(defs) @ Registry()


@lru_cache(maxsize=256)
def _builtin_validator(api_version: str, kind: str, strict: bool) -> jsonschema.Draft202012Validator | None:
    gv = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dir(strict) / f"{kind.lower()}-{gv}.json"
    if not path.exists():
        return None
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema, registry=_registry(strict))


def crd_to_jsonschema(node: Any, strict: bool) -> Any:
    if isinstance(node, list):
        return [crd_to_jsonschema(x, strict) for x in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: crd_to_jsonschema(v, strict)
        for k, v in node.items()
        if not k.startswith("x-kubernetes-") and k != "nullable"
    }
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], **out}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        strict
        and out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def rules(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """What the API server's validation checks beyond the schema, for the kinds the lab runs: a Job's
    (or a CronJob's) pods must run to completion."""
    kind = obj.get("kind")
    if obj.get("apiVersion") != "batch/v1" or kind not in ("Job", "CronJob"):
        return []
    spec = obj.get("spec") or {}
    if kind == "CronJob":
        spec, path = (spec.get("jobTemplate") or {}).get("spec") or {}, "spec.jobTemplate.spec.template.spec"
    else:
        path = "spec.template.spec"
    policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy", "")
    if policy in ("OnFailure", "Never"):
        return []
    return [
        (f"{path}.restartPolicy", f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"')
    ]


def validate(obj: dict[str, Any], crd: dict[str, Any] | None, strict: bool) -> list[tuple[str, str]]:
    """(field, message) problems; empty when the object conforms."""
    if crd is not None:
        version = next(
            (v for v in crd["spec"]["versions"] if v["name"] == obj["apiVersion"].split("/")[-1]), None
        )
        schema = (version or {}).get("schema", {}).get("openAPIV3Schema")
        if schema is None:
            return []
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        props = dict(schema.get("properties", {}))
        for k in ("apiVersion", "kind", "metadata"):
            props.pop(k, None)
        required = [r for r in schema.get("required", []) if r not in ("apiVersion", "kind", "metadata")]
        converted = crd_to_jsonschema({**schema, "properties": props, "required": required}, strict)
        validator: jsonschema.Draft202012Validator | None = jsonschema.Draft202012Validator(converted)
        target: dict[str, Any] = body
    else:
        validator = _builtin_validator(obj["apiVersion"], obj["kind"], strict)
        target = obj
    if validator is None:
        return rules(obj)
    return (
        rules(obj)
        + [
            (".".join(str(p) for p in e.absolute_path) or "<root>", e.message)
            for e in sorted(validator.iter_errors(target), key=lambda e: list(map(str, e.absolute_path)))
        ][:10]
    )
