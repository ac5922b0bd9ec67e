"""invoicing: invoices, lines, credit notes, numbering

Revision ID: 0006_invoicing
Revises: 0005_grants
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallybook.db.types import DecimalType, JSONType, UTCDateTime


revision = "0006_invoicing"
down_revision = "0005_grants"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
