"""Capture sessions: live or a file, and a file's frame rate (the video position).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("stream", sa.String(100), primary_key=True),
        sa.Column("session", sa.String(100), primary_key=True),
        sa.Column("live", sa.Boolean),
        sa.Column("fps", sa.Float),
        sa.Column("created", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sessions")
