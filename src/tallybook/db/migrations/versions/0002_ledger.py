"""ledger: accounts, balances, transfers, entries, failures

Revision ID: 0002_ledger
Revises: 0001_spine
"""

from __future__ import annotations

from tallybook.db.types import DecimalType, JSONType, UTCDateTime  # noqa: F401

revision = "0002_ledger"
down_revision = "0001_spine"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
