"""JSON on the wire as kube-apiserver writes it: Go's ``json.Encoder`` — compact, HTML-escaped, one value
per line (every body and every watch event ends with a newline).  Clients that compare bodies byte for
byte, or split a watch stream on newlines, see what they would see from a real server."""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def encode(value: Any) -> bytes:
    """One JSON value as ``json.NewEncoder(w).Encode`` writes it."""
    return (
        json.dumps(value, separators=(",", ":"), ensure_ascii=False).translate(_GO_ESCAPES) + "\n"
    ).encode()


def respond(
    value: Any, status: int = 200, headers: dict[str, str] | None = None, as_yaml: bool = False
) -> web.Response:
    """``value`` as JSON, or as YAML when the client asked for ``application/yaml``."""
    if as_yaml:
        text = yaml.safe_dump(value, sort_keys=False, allow_unicode=True)
        return web.Response(text=text, status=status, headers=headers, content_type="application/yaml")
    return web.Response(body=encode(value), status=status, headers=headers, content_type="application/json")
