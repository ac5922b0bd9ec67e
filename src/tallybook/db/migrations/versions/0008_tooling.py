"""tooling: console users, audit log, reconciliation, outbound webhooks

Revision ID: 0008_tooling
Revises: 0007_payments
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallybook.db.types import DecimalType, JSONType, UTCDateTime


revision = "0008_tooling"
down_revision = "0007_payments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
