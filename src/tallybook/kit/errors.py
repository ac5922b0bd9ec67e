"""The one error base and its wire shape.

Every expected failure is a :class:`TallybookError` with a named ``code`` (a ``StrEnum`` value
owned by the domain that raises it), an error ``type`` that tells clients how to react, a
human ``message`` and the ``param`` (request field) that caused it. The HTTP edge renders it as::

    {"error": {"type": ..., "code": ..., "message": ..., "param": ..., "request_id": ...}}

Hierarchy::

    TallybookError                      (type decides the HTTP status unless overridden)
     ├── InvalidRequest                 400 invalid_request_error: bad input, nothing written
     ├── NotFound                       404 invalid_request_error / resource_missing
     ├── Conflict                       409 conflict_error: state forbids it (retry won't help)
     ├── IdempotencyError               409 idempotency_error: a key or id reused differently
     ├── AuthenticationFailed           401 authentication_error
     ├── PermissionDenied               403 permission_error
     └── ServiceUnavailable             503 api_error, retryable

Programmer errors are not here: see :mod:`tallybook.kit.invariant`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorType(StrEnum):
    INVALID_REQUEST = "invalid_request_error"
    CONFLICT = "conflict_error"
    IDEMPOTENCY = "idempotency_error"
    AUTHENTICATION = "authentication_error"
    PERMISSION = "permission_error"
    RATE_LIMIT = "rate_limit_error"
    API = "api_error"


class CommonCode(StrEnum):
    """Codes shared by every domain. Domains define their own ``StrEnum`` for the rest."""

    PARAMETER_INVALID = "parameter_invalid"
    PARAMETER_MISSING = "parameter_missing"
    PARAMETER_UNKNOWN = "parameter_unknown"
    MALFORMED_JSON = "malformed_json"
    BODY_TOO_LARGE = "body_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    RESOURCE_MISSING = "resource_missing"
    ROUTE_NOT_FOUND = "route_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CURRENCY_INVALID = "currency_invalid"
    CURRENCY_MISMATCH = "currency_mismatch"
    AMOUNT_INVALID = "amount_invalid"
    AMOUNT_TOO_LARGE = "amount_too_large"
    QUANTITY_INVALID = "quantity_invalid"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    IDEMPOTENCY_KEY_INVALID = "idempotency_key_invalid"
    IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"
    API_KEY_MISSING = "api_key_missing"
    API_KEY_INVALID = "api_key_invalid"
    SCOPE_MISSING = "scope_missing"
    LIMIT_INVALID = "limit_invalid"
    CURSOR_INVALID = "cursor_invalid"
    INTERNAL_ERROR = "internal_error"
    SERVICE_UNAVAILABLE = "service_unavailable"


class TallybookError(Exception):
    """Base of every expected failure. Subclasses fix ``type`` and the HTTP status."""

    error_type: ClassVar[ErrorType] = ErrorType.INVALID_REQUEST
    http_status: ClassVar[int] = 400
    #: Whether the same request may succeed later without any change by the caller.
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        code: StrEnum | str,
        message: str,
        *,
        param: str | None = None,
        http_status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.param = param
        self.details = details or {}
        if http_status is not None:
            self.status = http_status
        else:
            self.status = self.http_status

    def to_wire(self, request_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": str(self.error_type),
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "request_id": request_id,
        }
        if self.details:
            body["details"] = self.details
        return {"error": body}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, param={self.param!r})"


class InvalidRequest(TallybookError):
    error_type = ErrorType.INVALID_REQUEST
    http_status = 400


class NotFound(TallybookError):
    error_type = ErrorType.INVALID_REQUEST
    http_status = 404

    def __init__(self, object_name: str, object_id: str, *, param: str | None = "id") -> None:
        super().__init__(
            CommonCode.RESOURCE_MISSING, f"No such {object_name}: '{object_id}'", param=param
        )


class Conflict(TallybookError):
    error_type = ErrorType.CONFLICT
    http_status = 409


class IdempotencyError(TallybookError):
    error_type = ErrorType.IDEMPOTENCY
    http_status = 409


class AuthenticationFailed(TallybookError):
    error_type = ErrorType.AUTHENTICATION
    http_status = 401


class PermissionDenied(TallybookError):
    error_type = ErrorType.PERMISSION
    http_status = 403


class ServiceUnavailable(TallybookError):
    error_type = ErrorType.API
    http_status = 503
    retryable = True
