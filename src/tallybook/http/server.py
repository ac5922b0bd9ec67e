"""How ``tallybook serve`` runs uvicorn: one write per response.

uvicorn's httptools protocol writes a response's head and its body to the socket separately:
two ``write`` system calls per response, each running the loopback TCP stack in the server's
own thread. Profiled on the entitlement check, those writes were about a fifth of the server's
CPU. :class:`CorkedHttpToolsProtocol` hands uvicorn a transport that gathers every write made
during one turn of the event loop and sends them together at the end of that turn (what
``TCP_CORK`` does in the kernel, without its extra system calls): one ``write`` per response.
Nothing waits longer than the current turn of the loop, and anything that closes, aborts or
hands over the connection sends what was gathered first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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


class CorkedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`CorkedTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        corked = CorkedTransport(transport, asyncio.get_running_loop())
        super().connection_made(corked)  # type: ignore[arg-type]


def uvicorn_options() -> dict[str, Any]:
    """What ``tallybook serve`` (and the benchmarks' servers) pass to ``uvicorn.run``."""
    return {"http": CorkedHttpToolsProtocol, "server_header": False}
