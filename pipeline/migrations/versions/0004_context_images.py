"""Events keep a context image: the whole frame of their snapshot and its faces' boxes.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("context", sa.String(500)))
    op.add_column("events", sa.Column("context_faces", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("context_faces")
        batch.drop_column("context")
