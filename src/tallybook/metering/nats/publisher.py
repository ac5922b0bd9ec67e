"""Ingestion nodes in ``nats`` mode: publish each event to JetStream and answer ``queued``.

A publish is answered only after JetStream acknowledged every event of the request; if any
publish fails the whole request fails (503, retryable): re-sending is safe, the stream's
``Nats-Msg-Id`` window and the database's exact dedup absorb the copies.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tallybook.kit.errors import ServiceUnavailable
from tallybook.metering.cloudevents import encode_raw
from tallybook.metering.errors import MeteringCode
from tallybook.metering.nats.stream import (
    MSG_ID_HEADER,
    RECEIVED_AT_HEADER,
    StreamSpec,
    ensure_stream,
    msg_id,
    received_header,
)

PUBLISH_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Queued:
    stream_seq: int
    duplicate: bool


class EventPublisher:
    """One NATS connection per process (per event loop), opened on first use."""

    def __init__(self, url: str, spec: StreamSpec) -> None:
        self.url = url
        self.spec = spec
        self._nc: Any = None
        self._js: Any = None
        self._lock = asyncio.Lock()

    async def _jetstream(self) -> Any:
        if self._js is not None and self._nc is not None and self._nc.is_connected:
            return self._js
        async with self._lock:
            if self._js is None or self._nc is None or not self._nc.is_connected:
                import nats

                self._nc = await nats.connect(
                    self.url, connect_timeout=5, max_reconnect_attempts=-1
                )
                self._js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT_SECONDS)
                await ensure_stream(self._js, self.spec)
        return self._js

    async def publish(self, events: list[Any], received_at: datetime) -> list[Queued]:
        try:
            js = await self._jetstream()
            futures = []
            received = received_header(received_at)
            for event in events:
                headers = {RECEIVED_AT_HEADER: received}
                identity = msg_id(event)
                if identity is not None:
                    headers[MSG_ID_HEADER] = identity
                futures.append(
                    await js.publish_async(
                        self.spec.subject, encode_raw(event).encode(), headers=headers
                    )
                )
            acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=PUBLISH_TIMEOUT_SECONDS)
        except Exception as exc:  # any broker failure: the client retries the request
            raise ServiceUnavailable(
                MeteringCode.INGEST_UNAVAILABLE,
                f"the event stream did not acknowledge the events ({type(exc).__name__}); "
                "retry: re-sending is safe",
            ) from exc
        return [Queued(stream_seq=int(ack.seq), duplicate=bool(ack.duplicate)) for ack in acks]

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = None
            self._js = None
