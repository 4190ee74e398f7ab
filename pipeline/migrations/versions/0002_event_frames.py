"""Events record the sequence numbers of their first and last sighting.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("first_frame", sa.Integer))
    op.add_column("events", sa.Column("last_frame", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("last_frame")
        batch.drop_column("first_frame")
