"""Indexes for erasing and pruning: negatives and track aliases by track.

`facepipe people --erase` and retention (`store.retention_days`, `facepipe db prune`)
delete events with everything that refers to their tracks; these indexes keep those
deletes (and re-identification merges, which re-point aliases) from scanning the tables.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_negatives_track_uid", "negatives", ["track_uid"])
    op.create_index("ix_track_aliases_into_uid", "track_aliases", ["into_uid"])


def downgrade() -> None:
    op.drop_index("ix_track_aliases_into_uid", table_name="track_aliases")
    op.drop_index("ix_negatives_track_uid", table_name="negatives")
