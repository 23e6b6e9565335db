"""OpenAPI v3 documents per group-version (what `kubectl explain` and client-side apply read).

Not served yet: the twin answers 404, which kubectl treats as "no OpenAPI" (see lab/README.md).
"""

from __future__ import annotations

from typing import Any


def group_version_document(registry: Any, tail: str) -> dict[str, Any] | None:
    return None
