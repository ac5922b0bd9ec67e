"""The outermost ASGI layer: request ids, body size limits, request metrics, and lanes.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so it adds microseconds, not milliseconds,
to the hot ingest and entitlement-check paths.

A **lane** answers one ``POST`` path before the framework sees it: the body is read here
(within its size limit), the lane turns it into a status and a JSON payload, and the response
leaves with the same request id header, error shape and metrics as every other route. The
entitlement check is one: FastAPI's routing, middleware stack and thread hop cost several
times what the check itself costs. The framework's route for the same path stays, so the
OpenAPI document shows it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tallybook.kit.errors import CommonCode, ErrorType
from tallybook.kit.ids import new_request_id
from tallybook.observability.logging import REQUEST_ID
from tallybook.observability.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

log = logging.getLogger(__name__)

BODY_BYTES_MAX_DEFAULT: Final = 1 * 1024 * 1024
REQUEST_ID_HEADER: Final = b"request-id"
_JSON_HEADER: Final = (b"content-type", b"application/json")


class BodyTooLarge(Exception):
    pass


class Lane(Protocol):
    """Answers one ``POST`` path: the request's scope, its whole body and its id in; the
    status and the JSON payload out (errors already in the one error shape)."""

    async def __call__(self, scope: Scope, body: bytes, request_id: str) -> tuple[int, bytes]: ...


def _error_body(
    request_id: str,
    code: str,
    message: str,
    error_type: ErrorType = ErrorType.INVALID_REQUEST,
) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "type": error_type.value,
                "code": code,
                "message": message,
                "param": None,
                "request_id": request_id,
            }
        }
    )


def _too_large_body(request_id: str, limit: int) -> bytes:
    return _error_body(request_id, CommonCode.BODY_TOO_LARGE, f"request body exceeds {limit} bytes")


async def _send_json(send: Send, status: int, payload: bytes, request_id: str) -> None:
    """A whole JSON response with the request id header, as two ASGI messages."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                _JSON_HEADER,
                (b"content-length", str(len(payload)).encode()),
                (REQUEST_ID_HEADER, request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks = []
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise BodyTooLarge() if message["type"] != "http.disconnect" else ConnectionError()
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        body_limits: Sequence[tuple[str, int]] = (),
        default_body_bytes_max: int = BODY_BYTES_MAX_DEFAULT,
        lanes: Mapping[str, Lane] | None = None,
    ) -> None:
        self.app = app
        #: POST path → lane; mutable so a host (the benchmark's baseline) can add one.
        self.lanes: dict[str, Lane] = dict(lanes or {})
        # Longest prefix first so "/v1/events" wins over "/v1".
        self.body_limits = sorted(body_limits, key=lambda item: -len(item[0]))
        self.default_body_bytes_max = default_body_bytes_max

    def limit_for(self, path: str) -> int:
        """The body size limit of requests to ``path``, in bytes."""
        for prefix, limit in self.body_limits:
            if path.startswith(prefix):
                return limit
        return self.default_body_bytes_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lane = self.lanes.get(scope["path"])
        if lane is not None and scope["method"] == "POST":
            await self._serve_lane(lane, scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status_holder = [500]
        limit = self.limit_for(scope["path"])

        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await self._reject_too_large(send, request_id, limit)
                    self._observe(scope, 413, started)
                    REQUEST_ID.reset(token)
                    return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                status_holder[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except BodyTooLarge:
            if not response_started:
                await self._reject_too_large(send, request_id, limit)
            status_holder[0] = 413
        finally:
            self._observe(scope, status_holder[0], started)
            REQUEST_ID.reset(token)

    async def _serve_lane(self, lane: Lane, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        limit = self.limit_for(path)
        body: bytes | None = None
        try:
            if declared_too_large(scope, limit):
                raise BodyTooLarge()
            body = await _read_body(receive, limit)
        except BodyTooLarge:
            body = None
        except ConnectionError:
            # The client went away before its body arrived: nothing to send.
            count_lane(path, 499, time.perf_counter())
            return
        status, payload, request_id = await answer_lane(lane, scope, body, limit)
        await _send_json(send, status, payload, request_id)

    async def _reject_too_large(self, send: Send, request_id: str, limit: int) -> None:
        await _send_json(send, 413, _too_large_body(request_id, limit), request_id)

    @staticmethod
    def _observe(scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        route_path = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        HTTP_REQUESTS.labels(method, route_path, str(status)).inc()
        HTTP_REQUEST_SECONDS.labels(method, route_path).observe(time.perf_counter() - started)


def declared_too_large(scope: Scope, limit: int) -> bool:
    """Whether the request's ``Content-Length`` already says its body exceeds ``limit``."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return bool(value.isdigit()) and int(value) > limit
    return False


async def answer_lane(
    lane: Lane, scope: Scope, body: bytes | None, limit: int
) -> tuple[int, bytes, str]:
    """A lane's answer to one request, as (status, JSON payload, request id): the lane's own,
    413 in the one error shape when ``body`` is ``None`` (it exceeded ``limit`` bytes), a
    logged 500 when the lane fails unexpectedly. Counted in the request metrics. Both ways a
    lane is served use it: the ASGI layer (:class:`EdgeMiddleware`) and ``tallybook serve``'s
    HTTP protocol (``http.server``), which answers lanes without building ASGI messages."""
    request_id = new_request_id()
    token = REQUEST_ID.set(request_id)
    started = time.perf_counter()
    status = 500
    try:
        if body is None:
            status = 413
            payload = _too_large_body(request_id, limit)
        else:
            try:
                status, payload = await lane(scope, body, request_id)
            except Exception:
                log.exception("unhandled error")
                status = 500
                payload = _error_body(
                    request_id,
                    CommonCode.INTERNAL_ERROR,
                    "an internal error occurred; it has been logged with this request id",
                    ErrorType.API,
                )
        return status, payload, request_id
    finally:
        count_lane(scope["path"], status, started)
        REQUEST_ID.reset(token)


def count_lane(path: str, status: int, started: float) -> None:
    """One lane request in the request metrics (label children cached: this is per request)."""
    counted, timed = _lane_metrics(path, status)
    counted.inc()
    timed.observe(time.perf_counter() - started)


@functools.cache
def _lane_metrics(path: str, status: int) -> tuple[Any, Any]:
    return (
        HTTP_REQUESTS.labels("POST", path, str(status)),
        HTTP_REQUEST_SECONDS.labels("POST", path),
    )


def wrap(app: ASGIApp, **kwargs: Any) -> Callable[..., Any]:
    return EdgeMiddleware(app, **kwargs)
