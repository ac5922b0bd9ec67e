"""grants and entitlements: credit grants, promotion codes, overrides, spend limits

Revision ID: 0005_grants
Revises: 0004_catalog
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallybook.db.types import DecimalType, JSONType, UTCDateTime


revision = "0005_grants"
down_revision = "0004_catalog"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
