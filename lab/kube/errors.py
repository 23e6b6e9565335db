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
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


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
