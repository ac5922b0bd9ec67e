"""Every API error has one shape: ``{"error": {type, code, message, param, request_id}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from tallybook.http.responses import json_response
from tallybook.kit.errors import CommonCode, ErrorType, TallybookError

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    type: str
    code: str
    message: str
    param: str | None = None
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


#: Declared on routes with ``responses=ERROR_RESPONSES`` so OpenAPI documents the shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": description}
    for code, description in (
        (400, "Invalid request: the error names the code and the field"),
        (401, "Missing or invalid API key"),
        (403, "The API key lacks the required scope"),
        (404, "No such object"),
        (409, "Conflict with current state, or idempotency conflict"),
        (413, "Request body too large"),
    )
}


def request_id_of(request: Request) -> str | None:
    state = request.scope.get("state") or {}
    value = state.get("request_id")
    return value if isinstance(value, str) else None


def error_response(
    request_id: str | None,
    *,
    status_code: int,
    error_type: str,
    code: str,
    message: str,
    param: str | None = None,
    details: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": error_type,
        "code": code,
        "message": message,
        "param": param,
        "request_id": request_id,
    }
    if details:
        body["details"] = details
    return json_response({"error": body}, status_code=status_code)


def render_error(error: TallybookError, request_id: str | None) -> Response:
    return json_response(error.to_wire(request_id), status_code=error.status)


def _param_from_loc(loc: tuple[Any, ...]) -> str | None:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or None


def _validation_code(error_kind: str) -> str:
    if error_kind == "missing":
        return CommonCode.PARAMETER_MISSING
    if error_kind in ("json_invalid", "json_type"):
        return CommonCode.MALFORMED_JSON
    if error_kind == "extra_forbidden":
        return CommonCode.PARAMETER_UNKNOWN
    return CommonCode.PARAMETER_INVALID


def install_error_handlers(app: FastAPI) -> None:
    async def on_tallybook_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TallybookError)
        return render_error(exc, request_id_of(request))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        first = errors[0] if errors else {"type": "value_error", "loc": (), "msg": "invalid"}
        code = _validation_code(str(first.get("type", "")))
        param = _param_from_loc(tuple(first.get("loc", ())))
        message = str(first.get("msg", "invalid request"))
        if code == CommonCode.MALFORMED_JSON:
            param = None
            message = "the request body is not valid JSON"
        elif param:
            message = f"{param}: {message}"
        details = None
        if len(errors) > 1:
            details = {
                "errors": [
                    {"param": _param_from_loc(tuple(e.get("loc", ()))), "message": e.get("msg")}
                    for e in errors[:20]
                ]
            }
        return error_response(
            request_id_of(request),
            status_code=400,
            error_type=ErrorType.INVALID_REQUEST,
            code=code,
            message=message,
            param=param,
            details=details,
        )

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {
            404: CommonCode.ROUTE_NOT_FOUND,
            405: CommonCode.METHOD_NOT_ALLOWED,
            413: CommonCode.BODY_TOO_LARGE,
            415: CommonCode.UNSUPPORTED_MEDIA_TYPE,
        }.get(exc.status_code, CommonCode.PARAMETER_INVALID)
        return error_response(
            request_id_of(request),
            status_code=exc.status_code,
            error_type=ErrorType.INVALID_REQUEST,
            code=code,
            message=str(exc.detail),
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        return error_response(
            request_id_of(request),
            status_code=500,
            error_type=ErrorType.API,
            code=CommonCode.INTERNAL_ERROR,
            message="an internal error occurred; it has been logged with this request id",
        )

    app.add_exception_handler(TallybookError, on_tallybook_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(Exception, on_unexpected)
