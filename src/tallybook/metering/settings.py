"""Metering settings, read from ``TALLYBOOK_*`` environment variables via ``kit.settings``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tallybook.kit.settings import Settings
from tallybook.metering.limits import FUTURE_SKEW_SECONDS_DEFAULT, LATE_EVENT_MAX_DAYS_DEFAULT

INGEST_DB: Final = "db"
INGEST_NATS: Final = "nats"
NATS_URL_DEFAULT: Final = "nats://127.0.0.1:4222"
NATS_STREAM_DEFAULT: Final = "TALLYBOOK_EVENTS"
NATS_SUBJECT_DEFAULT: Final = "tallybook.events"
NATS_DURABLE_DEFAULT: Final = "tallybook-metering"


@dataclass(frozen=True, slots=True)
class MeteringSettings:
    #: ``TALLYBOOK_LATE_EVENT_MAX_DAYS``: events older than this (by their ``time``) are
    #: rejected with ``time_too_old``.
    late_event_max_days: int = LATE_EVENT_MAX_DAYS_DEFAULT
    #: ``TALLYBOOK_EVENT_FUTURE_SKEW_SECONDS``: events further in the future are rejected with
    #: ``time_in_future``.
    future_skew_seconds: int = FUTURE_SKEW_SECONDS_DEFAULT
    #: ``TALLYBOOK_METERING_INGEST``: ``db`` (write on receipt) or ``nats`` (publish to
    #: JetStream; ``tallybook worker metering`` writes).
    ingest_mode: str = INGEST_DB
    nats_url: str = NATS_URL_DEFAULT
    nats_stream: str = NATS_STREAM_DEFAULT
    nats_subject: str = NATS_SUBJECT_DEFAULT
    nats_durable: str = NATS_DURABLE_DEFAULT
    #: JetStream replicas for the stream (3 in a production cluster).
    nats_replicas: int = 1

    @classmethod
    def from_settings(cls, settings: Settings | None) -> MeteringSettings:
        env = settings.extra if settings is not None else {}
        mode = env.get("TALLYBOOK_METERING_INGEST", INGEST_DB).strip().lower()
        if mode not in (INGEST_DB, INGEST_NATS):
            raise ValueError(f"TALLYBOOK_METERING_INGEST must be db or nats, not {mode!r}")
        return cls(
            late_event_max_days=int(
                env.get("TALLYBOOK_LATE_EVENT_MAX_DAYS", LATE_EVENT_MAX_DAYS_DEFAULT)
            ),
            future_skew_seconds=int(
                env.get("TALLYBOOK_EVENT_FUTURE_SKEW_SECONDS", FUTURE_SKEW_SECONDS_DEFAULT)
            ),
            ingest_mode=mode,
            nats_url=env.get("TALLYBOOK_NATS_URL", NATS_URL_DEFAULT),
            nats_stream=env.get("TALLYBOOK_NATS_STREAM", NATS_STREAM_DEFAULT),
            nats_subject=env.get("TALLYBOOK_NATS_SUBJECT", NATS_SUBJECT_DEFAULT),
            nats_durable=env.get("TALLYBOOK_NATS_DURABLE", NATS_DURABLE_DEFAULT),
            nats_replicas=int(env.get("TALLYBOOK_NATS_REPLICAS", "1")),
        )
