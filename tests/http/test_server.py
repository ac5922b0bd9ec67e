"""``tallybook serve``'s uvicorn protocol: the writes of one event-loop turn leave together."""

from __future__ import annotations

import asyncio
from typing import Any

from tallybook.http.server import CorkedTransport
from tests.fixtures.aio import run_async


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
