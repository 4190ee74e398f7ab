"""One sample per track, kind and frame: a unique index on samples (track_uid, kind, seq).

``EventStore.add_samples`` skipped the samples a track had already by looking them up
first, in the same transaction as the insert; two sink processes running the same job at
once (an rq job recovered while its first worker still runs) could both find a sample
missing and both store it, and the event was fused from it twice. The index makes the
database decide: the insert skips conflicting rows.

Duplicates stored before this revision are deleted first, keeping each one's first row
(the lowest id). Events fused from them keep their values until they are fused again
(their next sample, or a relabel).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

INDEX = "uq_samples_track_uid_kind_seq"


def upgrade() -> None:
    samples = sa.table(
        "samples",
        sa.column("id", sa.Integer),
        sa.column("track_uid", sa.String),
        sa.column("kind", sa.String),
        sa.column("seq", sa.Integer),
    )
    earlier = samples.alias("earlier")
    # a row goes when an earlier row (lower id) has its key; the track index serves it
    duplicates = samples.delete().where(
        sa.exists().where(
            earlier.c.track_uid == samples.c.track_uid,
            earlier.c.kind == samples.c.kind,
            earlier.c.seq == samples.c.seq,
            earlier.c.id < samples.c.id,
        )
    )
    dropped = op.get_bind().execute(duplicates).rowcount
    if dropped:
        log.warning("deleted %d duplicate samples (same track, kind and frame)", dropped)
    op.create_index(INDEX, "samples", ["track_uid", "kind", "seq"], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="samples")
