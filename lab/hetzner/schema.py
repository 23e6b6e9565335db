"""Validate every response the twin sends against ``shared/specs/hcloud-openapi.json``.

The spec needs two mechanical fixes before a JSON-Schema validator can read it, both about the spec's
form and neither loosening what it requires:

* response keys ``4xx``/``5xx`` are OpenAPI's ``4XX``/``5XX`` (lower case is invalid OpenAPI);
* OpenAPI 3.0's ``nullable: true`` becomes JSON Schema's ``null`` type.  The spec puts ``nullable`` beside
  ``allOf: [$ref]`` (for example ``action.error``, ``server.image``), which strict OpenAPI tooling reads as
  "never null" although the real API sends ``null`` there; we read it as the spec's authors meant.
"""

from __future__ import annotations

import copy
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

_SPEC_ENV = "OPSCONSOLE_HCLOUD_SPEC"


def spec_path() -> Path:
    """The shared spec: ``$OPSCONSOLE_HCLOUD_SPEC``, else ``../shared/specs`` beside the checkout."""
    if os.environ.get(_SPEC_ENV):
        return Path(os.environ[_SPEC_ENV])
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "specs" / "hcloud-openapi.json"
        if candidate.exists():
            return candidate
    raise FileNotFoundError("hcloud-openapi.json not found; set OPSCONSOLE_HCLOUD_SPEC")


def _nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items()}
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


class SpecValidator:
    """Finds the operation for (method, path template, status) and validates a JSON body against it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        spec = copy.deepcopy(spec)
        self.components = _nullable(spec["components"]["schemas"])
        self.paths: dict[str, Any] = spec["paths"]
        # Literal segments win over parameters (`/servers/{id}/actions/poweroff` before `.../{action_id}`).
        ordered = sorted(self.paths, key=lambda p: p.count("{"))
        self._templates: list[tuple[re.Pattern[str], str]] = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p) for p in ordered
        ]

    def template_for(self, path: str) -> str | None:
        if path in self.paths:
            return path
        for rx, template in self._templates:
            if rx.match(path):
                return template
        return None

    @lru_cache(maxsize=1024)  # noqa: B019 - one validator object for the lab's lifetime
    def _validator(self, template: str, method: str, status: int) -> Draft202012Validator | None:
        op = self.paths.get(template, {}).get(method.lower())
        if op is None:
            raise KeyError(f"{method} {template} is not in the spec")
        responses = {k.upper(): v for k, v in op["responses"].items()}
        resp = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("DEFAULT")
        if resp is None:
            raise KeyError(f"{method} {template} has no response {status} in the spec")
        content = resp.get("content", {}).get("application/json")
        if content is None:
            return None
        return Draft202012Validator(
            {"$defs": {}, "components": {"schemas": self.components}, **content["schema"]}
        )

    def errors(self, method: str, template: str, status: int, body: Any) -> list[str]:
        """Human-readable schema violations (empty when the body conforms)."""
        try:
            validator = self._validator(template, method, status)
        except KeyError as exc:
            return [str(exc.args[0])]
        if validator is None:
            return [] if body is None else [f"{method} {template} {status}: spec declares no body"]
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
            for e in validator.iter_errors(body)
        ]


@lru_cache(maxsize=1)
def load_validator() -> SpecValidator:
    return SpecValidator(json.loads(spec_path().read_text()))


def request_errors(validator: SpecValidator, method: str, template: str, body: Any) -> list[str]:
    """Violations of the operation's request-body schema (what the real API answers with invalid_input)."""
    op = validator.paths.get(template, {}).get(method.lower(), {})
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return []
    v = Draft202012Validator({"components": {"schemas": validator.components}, **content["schema"]})
    return [f"{'.'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in v.iter_errors(body)]
