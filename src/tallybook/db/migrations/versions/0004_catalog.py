"""catalog and subscriptions: features, plans, versions, prices, subscriptions

Revision ID: 0004_catalog
Revises: 0003_metering
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallybook.db.types import DecimalType, JSONType, UTCDateTime


revision = "0004_catalog"
down_revision = "0003_metering"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
