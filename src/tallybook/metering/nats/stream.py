"""Stream and consumer configuration, applied from code (idempotent).

JetStream acknowledges a publish before it fsyncs unless the server runs with
``jetstream { sync_interval: always }``; with one replica, a crash of the NATS host can lose
acknowledged messages (Jepsen, NATS 2.12). Production: a 3-node cluster, ``num_replicas: 3``
(``TALLYBOOK_NATS_REPLICAS=3``) and ``sync_interval: always``. ``docs/metering.md`` has the
configuration. Whatever the stream does, the database dedups exactly by (source, id), so a
redelivered or republished event is counted once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

from tallybook.metering.settings import MeteringSettings

#: Header carrying the receipt time at the ingestion node (the event's time when it has none).
RECEIVED_AT_HEADER: Final = "Tallybook-Received-At"
MSG_ID_HEADER: Final = "Nats-Msg-Id"
DUPLICATE_WINDOW_SECONDS: Final = 120.0
MAX_AGE_SECONDS: Final = 7 * 24 * 3600.0
ACK_WAIT_SECONDS: Final = 30.0
MAX_ACK_PENDING: Final = 20_000


@dataclass(frozen=True, slots=True)
class StreamSpec:
    stream: str
    subject: str
    durable: str
    replicas: int = 1

    @classmethod
    def of(cls, settings: MeteringSettings) -> StreamSpec:
        return cls(
            stream=settings.nats_stream,
            subject=settings.nats_subject,
            durable=settings.nats_durable,
            replicas=settings.nats_replicas,
        )


def msg_id(event: Any) -> str | None:
    """``Nats-Msg-Id`` = source/id, each percent-encoded so that no two (source, id) pairs
    share a message id (a ``/`` inside a source would otherwise be ambiguous)."""
    if not isinstance(event, dict):
        return None
    source, event_id = event.get("source"), event.get("id")
    if not isinstance(source, str) or not isinstance(event_id, str):
        return None
    return f"{quote(source, safe='')}/{quote(event_id, safe='')}"


async def ensure_stream(js: Any, spec: StreamSpec) -> None:
    """Create the stream if missing (file storage, a duplicate window, bounded age)."""
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(spec.stream)
        return
    except NotFoundError:
        pass
    await js.add_stream(
        StreamConfig(
            name=spec.stream,
            subjects=[spec.subject],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=spec.replicas,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            max_age=MAX_AGE_SECONDS,
        )
    )


async def ensure_consumer(
    js: Any, spec: StreamSpec, *, ack_wait_seconds: float = ACK_WAIT_SECONDS
) -> None:
    """A durable pull consumer with explicit acks (one ack per event, after commit).
    ``ack_wait_seconds``: how long a delivered, unacknowledged message waits before JetStream
    redelivers it (a worker died); longer than a batch's commit ever takes."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    try:
        await js.consumer_info(spec.stream, spec.durable)
        return
    except NotFoundError:
        pass
    await js.add_consumer(
        spec.stream,
        ConsumerConfig(
            durable_name=spec.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait_seconds,
            max_ack_pending=MAX_ACK_PENDING,
            filter_subject=spec.subject,
        ),
    )


def received_header(instant: datetime) -> str:
    return instant.isoformat()
