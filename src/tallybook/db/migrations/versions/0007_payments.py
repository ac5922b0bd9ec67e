"""payments: provider links, payment attempts, webhook inbox

Revision ID: 0007_payments
Revises: 0006_invoicing
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallybook.db.types import DecimalType, JSONType, UTCDateTime


revision = "0007_payments"
down_revision = "0006_invoicing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
