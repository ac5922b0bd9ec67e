"""``tallybook serve``'s uvicorn protocol: the writes of one event-loop turn leave together;
the edge's lanes are answered by the protocol (over real sockets: keep-alive, pipelining, size
limits, ``Expect: 100-continue``, HTTP/1.0, a failing lane)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from tallybook.http.middleware import EdgeMiddleware
from tallybook.http.server import CorkedTransport
from tallybook.observability.metrics import HTTP_REQUESTS
from tests.fixtures.aio import run_async
from tests.fixtures.serving import served_on_thread


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.events.append("write")

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.events.append("close")
        self.closing = True

    def abort(self) -> None:
        self.events.append("abort")
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def corked() -> tuple[CorkedTransport, RecordingTransport]:
    inner = RecordingTransport()
    return CorkedTransport(inner, asyncio.get_running_loop()), inner  # type: ignore[arg-type]


def test_the_writes_of_one_turn_are_one_write() -> None:
    async def scenario() -> list[bytes]:
        transport, inner = corked()
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"")
        transport.write(memoryview(b"body"))
        assert inner.writes == [] and transport.get_write_buffer_size() == 23
        await asyncio.sleep(0)
        transport.write(b"next")
        await asyncio.sleep(0)
        return inner.writes

    assert run_async(scenario()) == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next"]


def test_closing_sends_what_was_gathered_first_and_abort_drops_it() -> None:
    async def scenario() -> tuple[list[str], list[str], Any]:
        transport, inner = corked()
        transport.write(b"last words")
        transport.close()
        other, dropped = corked()
        other.write(b"never")
        other.abort()
        await asyncio.sleep(0)
        return inner.events, dropped.events, transport.get_extra_info("peername")

    closed, aborted, peer = run_async(scenario())
    assert closed == ["write", "close"] and aborted == ["abort"] and peer == ("127.0.0.1", 1)


def test_nothing_is_written_to_a_transport_already_closing() -> None:
    async def scenario() -> list[bytes]:
        transport, inner = corked()
        transport.write(b"late")
        inner.closing = True
        await asyncio.sleep(0)
        return inner.writes

    assert run_async(scenario()) == []


# Lanes answered by the protocol ------------------------------------------------------------------

LANE = "/lane"


@dataclass
class LaneServer:
    port: int
    asgi_lane_calls: list[str]

    def exchange(self, raw: bytes, *, responses: int = 1) -> list[bytes]:
        """Send ``raw`` on one connection; read ``responses`` whole responses."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as connection:
            connection.sendall(raw)
            return _read_responses(connection, responses)


def _read_responses(connection: socket.socket, count: int) -> list[bytes]:
    buffered = b""
    answers: list[bytes] = []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffered:
            chunk = connection.recv(65536)
            if not chunk:
                return answers
            buffered += chunk
        head, _, rest = buffered.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            rest += chunk
        if head.startswith(b"HTTP/1.1 100"):
            buffered = rest
            answers.append(head)
            continue
        answers.append(head + b"\r\n\r\n" + rest[:length])
        buffered = rest[length:]
    return answers


def _post(path: str, body: bytes, *extra: bytes, version: bytes = b"1.1") -> bytes:
    head = [
        b"POST " + path.encode() + b" HTTP/" + version,
        b"host: test",
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        *extra,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _status_and_body(response: bytes) -> tuple[int, dict[str, Any], dict[bytes, bytes]]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), json.loads(body), headers


@pytest.fixture
def lane_server() -> Iterator[LaneServer]:
    async def echo(scope: Any, body: bytes, request_id: str) -> tuple[int, bytes]:
        if body == b"fail":
            raise RuntimeError("boom")
        await asyncio.sleep(0)
        return 200, json.dumps({"bytes": len(body), "request_id": request_id}).encode()

    async def routed(request: Any) -> JSONResponse:
        return JSONResponse({"routed": True})

    app = EdgeMiddleware(
        Starlette(routes=[Route("/other", routed, methods=["POST"])]),
        lanes={LANE: echo},
        body_limits=[(LANE, 64)],
    )
    asgi_lane_calls: list[str] = []
    original = EdgeMiddleware._serve_lane

    async def counted(self: EdgeMiddleware, *args: Any) -> None:
        asgi_lane_calls.append("asgi")
        await original(self, *args)

    EdgeMiddleware._serve_lane = counted  # type: ignore[method-assign]
    try:
        with served_on_thread(app, lifespan="off") as port:
            yield LaneServer(port, asgi_lane_calls)
    finally:
        EdgeMiddleware._serve_lane = original  # type: ignore[method-assign]


def test_a_lane_is_answered_by_the_protocol_with_the_edges_headers(
    lane_server: LaneServer,
) -> None:
    before = HTTP_REQUESTS.labels("POST", LANE, "200")._value.get()
    [response] = lane_server.exchange(_post(LANE, b"{}"))
    status, body, headers = _status_and_body(response)
    assert status == 200 and body["bytes"] == 2
    assert headers[b"request-id"].decode() == body["request_id"]
    assert headers[b"content-type"] == b"application/json" and b"date" in headers
    assert b"connection" not in headers
    assert HTTP_REQUESTS.labels("POST", LANE, "200")._value.get() == before + 1
    assert lane_server.asgi_lane_calls == []


def test_pipelined_requests_are_answered_in_order_lanes_and_routes_alike(
    lane_server: LaneServer,
) -> None:
    raw = _post(LANE, b"1") + _post("/other", b"{}") + _post(LANE, b"333")
    answers = [_status_and_body(r) for r in lane_server.exchange(raw, responses=3)]
    assert [(status, body) for status, body, _ in answers[1:2]] == [(200, {"routed": True})]
    assert answers[0][1]["bytes"] == 1 and answers[2][1]["bytes"] == 3
    assert answers[0][1]["request_id"] != answers[2][1]["request_id"]


def test_a_body_over_the_limit_is_413_and_the_connection_goes_on(
    lane_server: LaneServer,
) -> None:
    declared = _post(LANE, b"x" * 65)
    chunked = (
        b"POST /lane HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n"
        b"40\r\n" + b"y" * 64 + b"\r\n1\r\nz\r\n0\r\n\r\n"
    )
    answers = lane_server.exchange(declared + chunked + _post(LANE, b"ok"), responses=3)
    first, second, third = (_status_and_body(r) for r in answers)
    assert first[0] == 413 and first[1]["error"]["code"] == "body_too_large"
    assert second[0] == 413 and second[1]["error"]["request_id"]
    assert third[0] == 200 and third[1]["bytes"] == 2


def test_expect_continue_http_1_0_and_a_failing_lane(lane_server: LaneServer) -> None:
    with socket.create_connection(("127.0.0.1", lane_server.port), timeout=10) as connection:
        head, _, body = _post(LANE, b"{}", b"expect: 100-continue").partition(b"\r\n\r\n")
        connection.sendall(head + b"\r\n\r\n")
        [interim] = _read_responses(connection, 1)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        connection.sendall(body)
        [answer] = _read_responses(connection, 1)
        assert _status_and_body(answer)[0] == 200
    [closing] = lane_server.exchange(_post(LANE, b"{}", version=b"1.0"))
    assert _status_and_body(closing)[2][b"connection"] == b"close"
    [failed] = lane_server.exchange(_post(LANE, b"fail"))
    status, body, _ = _status_and_body(failed)
    assert status == 500 and body["error"]["code"] == "internal_error"
    assert "boom" not in failed.decode()
    assert lane_server.asgi_lane_calls == []
