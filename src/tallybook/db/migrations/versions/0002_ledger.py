"""ledger: accounts, balances, transfers, entries, failures

Revision ID: 0002_ledger
Revises: 0001_spine
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallybook.db.types import DecimalType, JSONType, UTCDateTime


revision = "0002_ledger"
down_revision = "0001_spine"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
