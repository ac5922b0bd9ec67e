"""invoicing: invoices, lines, credit notes, numbering

Revision ID: 0006_invoicing
Revises: 0005_grants
"""

from __future__ import annotations

from tallybook.db.types import DecimalType, JSONType, UTCDateTime  # noqa: F401

revision = "0006_invoicing"
down_revision = "0005_grants"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
