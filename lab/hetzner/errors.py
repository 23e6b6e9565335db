"""The API's error body ``{"error": {"code", "message", "details"}}`` with the documented HTTP statuses."""

from __future__ import annotations

from typing import Any

STATUS = {
    "unauthorized": 401,
    "forbidden": 403,
    "token_readonly": 403,
    "invalid_input": 400,
    "json_error": 400,
    "not_found": 404,
    "method_not_allowed": 405,
    "uniqueness_error": 409,
    "conflict": 409,
    "resource_limit_exceeded": 403,
    "protected": 403,
    "locked": 423,
    "rate_limit_exceeded": 429,
    "service_error": 503,
    "server_error": 500,
    "unavailable": 503,
    "timeout": 504,
}


class ApiError(Exception):
    """Raised by handlers; the app turns it into the documented body and status."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 400)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def invalid_input(field: str, message: str) -> ApiError:
    return ApiError(
        "invalid_input",
        f"invalid input in field '{field}'",
        {"fields": [{"name": field, "messages": [message]}]},
    )


def not_found(kind: str, ident: object) -> ApiError:
    return ApiError("not_found", f"{kind} with ID '{ident}' not found", {})


def uniqueness(field: str) -> ApiError:
    return ApiError("uniqueness_error", f"{field} is already used", {"fields": [{"name": field}]})
