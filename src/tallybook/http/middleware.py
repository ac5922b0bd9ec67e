"""The outermost ASGI layer: request ids, body size limits, request metrics.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so it adds microseconds, not milliseconds,
to the hot ingest and entitlement-check paths.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tallybook.kit.errors import CommonCode, ErrorType
from tallybook.kit.ids import new_id
from tallybook.observability.logging import REQUEST_ID
from tallybook.observability.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

BODY_BYTES_MAX_DEFAULT: Final = 1 * 1024 * 1024
REQUEST_ID_HEADER: Final = b"request-id"


class BodyTooLarge(Exception):
    pass


def _error_body(request_id: str, code: str, message: str) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "type": ErrorType.INVALID_REQUEST.value,
                "code": code,
                "message": message,
                "param": None,
                "request_id": request_id,
            }
        }
    )


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        body_limits: Sequence[tuple[str, int]] = (),
        default_body_bytes_max: int = BODY_BYTES_MAX_DEFAULT,
    ) -> None:
        self.app = app
        # Longest prefix first so "/v1/events" wins over "/v1".
        self.body_limits = sorted(body_limits, key=lambda item: -len(item[0]))
        self.default_body_bytes_max = default_body_bytes_max

    def _limit_for(self, path: str) -> int:
        for prefix, limit in self.body_limits:
            if path.startswith(prefix):
                return limit
        return self.default_body_bytes_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id("req")
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status_holder = [500]
        limit = self._limit_for(scope["path"])

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

    async def _reject_too_large(self, send: Send, request_id: str, limit: int) -> None:
        body = _error_body(
            request_id, CommonCode.BODY_TOO_LARGE, f"request body exceeds {limit} bytes"
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _observe(scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        route_path = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        HTTP_REQUESTS.labels(method, route_path, str(status)).inc()
        HTTP_REQUEST_SECONDS.labels(method, route_path).observe(time.perf_counter() - started)


def wrap(app: ASGIApp, **kwargs: Any) -> Callable[..., Any]:
    return EdgeMiddleware(app, **kwargs)
