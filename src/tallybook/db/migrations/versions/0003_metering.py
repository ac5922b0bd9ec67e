"""metering: meters, events, rollups, dead letters

Revision ID: 0003_metering
Revises: 0002_ledger
"""

from __future__ import annotations

from tallybook.db.types import DecimalType, JSONType, UTCDateTime  # noqa: F401

revision = "0003_metering"
down_revision = "0002_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
