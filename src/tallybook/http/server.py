"""How ``tallybook serve`` runs uvicorn: one write per response, and lanes answered by the
protocol itself.

uvicorn's httptools protocol writes a response's head and its body to the socket separately:
two ``write`` system calls per response, each running the loopback TCP stack in the server's
own thread. Profiled on the entitlement check, those writes were about a fifth of the server's
CPU. :class:`CorkedHttpToolsProtocol` hands uvicorn a transport that gathers every write made
during one turn of the event loop and sends them together at the end of that turn (what
``TCP_CORK`` does in the kernel, without its extra system calls): one ``write`` per response.
Nothing waits longer than the current turn of the loop, and anything that closes, aborts or
hands over the connection sends what was gathered first.

**Lanes.** The edge's lanes (``http.middleware``: ``POST /v1/entitlements/check``, the API's
hottest request) are answered by the protocol, without ASGI: no scope middleware, no
``receive``/``send`` message dicts, no header validation of a response whose headers are
ours. The protocol gathers the body within the path's size limit, runs the lane through the
same :func:`~tallybook.http.middleware.answer_lane` the ASGI layer uses (request id, error
shape, metrics) and writes the response in one piece. Measured with a lane that does nothing,
2,000 requests/s: 173 µs of server CPU per request through uvicorn's ASGI cycle and the edge,
about 50 µs for a bare httptools protocol. Everything uvicorn does around a request stays
its own: keep-alive and its timeout, pipelining (a lane request waits its turn like any
other), flow control, graceful shutdown, the access log line. With uvicorn's concurrency
limit reached, lanes go through ASGI as before.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from tallybook.http.middleware import (
    REQUEST_ID_HEADER,
    EdgeMiddleware,
    Lane,
    answer_lane,
    declared_too_large,
)

log = logging.getLogger(__name__)


class CorkedTransport:
    """A transport that sends the writes of one event-loop turn in one system call."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._gathered: list[bytes] = []
        self._flush_scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._gathered.append(bytes(data))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._gathered:
            return
        data = b"".join(self._gathered) if len(self._gathered) > 1 else self._gathered[0]
        self._gathered.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._gathered.clear()
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._gathered))

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, get_extra_info, pause_reading, …) is the transport's.
        return getattr(self._transport, name)


class _BodyComplete:
    """Set once the request's body is whole (or the connection is lost): uvicorn's protocol
    calls ``cycle.message_event.set()``; a future is made only if the lane has to wait."""

    __slots__ = ("_waiter", "done")

    def __init__(self) -> None:
        self.done = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self.done = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self) -> None:
        if not self.done:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter


class LaneCycle:
    """One lane request on a connection, in the place of uvicorn's ``RequestResponseCycle``:
    the attributes uvicorn's protocol reads and sets (``response_complete``, ``disconnected``,
    ``keep_alive``, ``message_event``, ``more_body``) and ``run_asgi``, which uvicorn starts
    when the request's turn comes (at once, or after the pipelined requests before it)."""

    def __init__(
        self,
        protocol: LaneProtocol,
        lane: Lane,
        scope: dict[str, Any],
        limit: int,
        *,
        keep_alive: bool,
        expect_100_continue: bool,
        on_response: Callable[[], None],
    ) -> None:
        self.protocol = protocol
        self.lane = lane
        self.scope = scope
        self.limit = limit
        self.keep_alive = keep_alive
        self.expect_100_continue = expect_100_continue
        self.on_response = on_response
        self.body = bytearray()
        self.too_large = declared_too_large(scope, limit)
        self.more_body = True
        self.response_complete = False
        self.disconnected = False
        self.message_event = _BodyComplete()

    def add_body(self, chunk: bytes) -> None:
        if self.too_large or self.response_complete:
            return  # read and dropped, as uvicorn drops the rest of an answered request
        if len(self.body) + len(chunk) > self.limit:
            self.too_large = True
            self.body = bytearray()
            return
        self.body += chunk

    async def run_asgi(self, app: Any) -> None:  # uvicorn passes its app; a lane has its own
        transport = self.protocol.transport
        try:
            if not self.too_large and not self.message_event.done:
                if self.expect_100_continue:
                    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await self.message_event.wait()
            if self.disconnected:
                return
            status, payload, request_id = await answer_lane(
                self.lane, self.scope, None if self.too_large else bytes(self.body), self.limit
            )
            if self.disconnected:
                return
            head = [STATUS_LINE[status]]
            for name, value in self.protocol.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head.append(
                b"content-type: application/json\r\ncontent-length: %d\r\n%s: %s\r\n"
                % (len(payload), REQUEST_ID_HEADER, request_id.encode())
            )
            if not self.keep_alive:
                head.append(b"connection: close\r\n")
            head += [b"\r\n", payload]
            transport.write(b"".join(head))
            if self.protocol.access_log:
                self.protocol.access_logger.info(
                    '%s - "POST %s HTTP/%s" %d',
                    get_client_addr(self.scope),  # type: ignore[arg-type]
                    get_path_with_query_string(self.scope),  # type: ignore[arg-type]
                    self.scope["http_version"],
                    status,
                )
            self.response_complete = True
            if not self.keep_alive:
                transport.close()
            self.on_response()
        except Exception:
            log.exception("the lane's response failed; closing the connection")
            transport.close()


class LaneProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`CorkedTransport`, answering the edge's
    lanes itself (:class:`LaneCycle`); every other request goes through ASGI as usual."""

    _edge: EdgeMiddleware | None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        corked = CorkedTransport(transport, asyncio.get_running_loop())
        super().connection_made(corked)  # type: ignore[arg-type]
        self._edge = _edge_of(self.app)

    def on_headers_complete(self) -> None:
        lane, path, query = self._lane_of_request()
        if lane is None or self._edge is None:
            super().on_headers_complete()
            return
        self.scope["method"] = "POST"
        self.scope["path"] = path
        self.scope["raw_path"] = path.encode()
        self.scope["query_string"] = query
        existing = self.cycle
        http_version = self.parser.get_http_version()
        cycle = LaneCycle(
            self,
            lane,
            self.scope,  # type: ignore[arg-type]
            self._edge.limit_for(path),
            keep_alive=http_version != "1.0" and self.parser.should_keep_alive(),
            expect_100_continue=self.expect_100_continue,
            on_response=self.on_response_complete,
        )
        self.cycle = cycle  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            self._start_asgi_task(cycle, self.app)  # type: ignore[arg-type]
        else:
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))  # type: ignore[arg-type]

    def _lane_of_request(self) -> tuple[Lane | None, str, bytes]:
        """The lane of the request whose headers just ended, its path and query string."""
        edge = self._edge
        if edge is None or not edge.lanes or self.parser.get_method() != b"POST":
            return None, "", b""
        if self.parser.should_upgrade():
            return None, "", b""
        if self.limit_concurrency is not None and (
            len(self.connections) >= self.limit_concurrency
            or len(self.tasks) >= self.limit_concurrency
        ):
            return None, "", b""
        url = httptools.parse_url(self.url)
        path = url.path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        path = self.root_path + path
        return edge.lanes.get(path), path, url.query or b""

    def on_body(self, body: bytes) -> None:
        if isinstance(self.cycle, LaneCycle):
            self.cycle.add_body(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if isinstance(cycle, LaneCycle):
            cycle.more_body = False
            cycle.message_event.set()
        else:
            super().on_message_complete()


def _edge_of(app: Any) -> EdgeMiddleware | None:
    """The :class:`EdgeMiddleware` under uvicorn's wrappers (proxy headers, message logger),
    or ``None`` when the app has none."""
    for _ in range(8):
        if isinstance(app, EdgeMiddleware):
            return app
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def uvicorn_options() -> dict[str, Any]:
    """What ``tallybook serve`` (and the benchmarks' servers) pass to ``uvicorn.run``."""
    return {"http": LaneProtocol, "server_header": False}
