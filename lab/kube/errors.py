"""Kubernetes ``Status`` failures, with the reasons, codes and message shapes the real API server uses."""

from __future__ import annotations

from typing import Any


class KubeError(Exception):
    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        """The ``Status`` body in the field order Go's encoder writes ``metav1.Status`` (details before
        code; empty detail fields omitted, as ``omitempty`` does)."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = _details(self.details)
        body["code"] = self.code
        return body


DETAIL_ORDER = ("name", "group", "kind", "uid", "causes", "retryAfterSeconds")
CAUSE_ORDER = ("reason", "message", "field")


def _details(details: dict[str, Any]) -> dict[str, Any]:
    """``metav1.StatusDetails`` as serialised: its fields in declaration order, empty ones left out."""
    out = {k: details[k] for k in DETAIL_ORDER if details.get(k)}
    if "causes" in out:
        out["causes"] = [{k: c[k] for k in CAUSE_ORDER if c.get(k)} for c in out["causes"]]
    return out


def qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> KubeError:
    return KubeError(
        404,
        "NotFound",
        f'{qualified(plural, group)} "{name}" not found',
        {"name": name, "group": group, "kind": plural} if group else {"name": name, "kind": plural},
    )


def already_exists(plural: str, group: str, name: str) -> KubeError:
    return KubeError(
        409,
        "AlreadyExists",
        f'{qualified(plural, group)} "{name}" already exists',
        {"name": name, "group": group, "kind": plural},
    )


def conflict(plural: str, group: str, name: str) -> KubeError:
    return KubeError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again",
        {"name": name, "group": group, "kind": plural},
    )


def bad_request(message: str) -> KubeError:
    return KubeError(400, "BadRequest", message)


def forbidden(
    user: str, verb: str, plural: str, group: str, namespace: str | None, name: str = "", sub: str = ""
) -> KubeError:
    resource = f"{plural}/{sub}" if sub else plural
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    what = f'{qualified(plural, group)} "{name}"' if name else qualified(plural, group)
    return KubeError(
        403,
        "Forbidden",
        f'{what} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group '
        f'"{group}"{where}',
        {"name": name, "group": group, "kind": plural} if name else {"group": group, "kind": plural},
    )


def namespace_terminating(plural: str, group: str, name: str, namespace: str) -> KubeError:
    """The NamespaceLifecycle admission's refusal of new content in a namespace being deleted."""
    return KubeError(
        403,
        "Forbidden",
        f'{qualified(plural, group)} "{name}" is forbidden: unable to create new content in namespace '
        f"{namespace} because it is being terminated",
        {
            "name": name,
            "group": group,
            "kind": plural,
            "causes": [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {namespace} is being terminated",
                    "field": "metadata.namespace",
                }
            ],
        },
    )


def gone(message: str) -> KubeError:
    return KubeError(410, "Expired", message)


def unsupported_media_type(content_type: str) -> KubeError:
    return KubeError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        if content_type
        else "missing content type",
    )


def unauthorized() -> KubeError:
    return KubeError(401, "Unauthorized", "Unauthorized")
