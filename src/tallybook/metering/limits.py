"""Every bound of the metering pipeline, named once."""

from __future__ import annotations

from typing import Final

#: Events per batched request (CloudEvents batch mode); bodies are also capped at 4 MiB.
BATCH_EVENTS_MAX: Final = 1_000
BATCH_BYTES_MAX: Final = 4 * 1024 * 1024
#: One event, encoded, at most (the dead-letter table keeps it whole).
EVENT_BYTES_MAX: Final = 64 * 1024
EVENT_ID_LENGTH_MAX: Final = 255
EVENT_SOURCE_LENGTH_MAX: Final = 255
EVENT_TYPE_LENGTH_MAX: Final = 200
EVENT_SUBJECT_LENGTH_MAX: Final = 200
#: Unique-count values and dimension values, as text.
UNIQUE_VALUE_LENGTH_MAX: Final = 200
DIMENSION_VALUE_LENGTH_MAX: Final = 100
#: Decimal places a metered value may carry (rollups are NUMERIC(38, 12)).
VALUE_SCALE_MAX: Final = 12

LATE_EVENT_MAX_DAYS_DEFAULT: Final = 35
FUTURE_SKEW_SECONDS_DEFAULT: Final = 300

#: Usage queries.
USAGE_WINDOWS_MAX: Final = 2_000
USAGE_RANGE_DAYS_MAX: Final = 400
LIST_EVENTS_LIMIT_MAX: Final = 1_000
#: Raw rows a single list_events call scans before returning a partial page with a cursor.
LIST_EVENTS_SCAN_MAX: Final = 10_000

#: Rows a rollup key is spread over on PostgreSQL (see ``models.Rollup``).
ROLLUP_SHARDS: Final = 16

#: Dead letters replayed per call.
REPLAY_BATCH_MAX: Final = 1_000

#: Backfill: events read per transaction.
BACKFILL_BATCH_MAX: Final = 5_000

#: Ingestion caches (per database engine).
CUSTOMER_CACHE_SIZE_MAX: Final = 200_000
