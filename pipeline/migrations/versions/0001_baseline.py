"""Baseline: the event store as facepipe created it before it used Alembic.

The tables as ``metadata.create_all`` made them, without the two columns that a
hand-written ``ALTER TABLE`` added later (revision 0002). The schema is frozen here (not
imported from :mod:`pipeline.store`): this revision must create the same tables whatever
the models become. :func:`pipeline.migrations.upgrade` also uses :data:`METADATA` to
complete a store that predates Alembic before stamping it.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

METADATA = sa.MetaData()

sa.Table(
    "events",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("track_uid", sa.String(200), nullable=False, unique=True),
    sa.Column("stream", sa.String(100), nullable=False, index=True),
    sa.Column("session", sa.String(100), nullable=False),
    sa.Column("track_id", sa.Integer, nullable=False),
    sa.Column("person", sa.String(200), index=True),
    sa.Column("person_confidence", sa.Float),
    sa.Column("person_distance", sa.Float),
    sa.Column("unknown_id", sa.String(50), index=True),
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False, index=True),
    sa.Column("n_frames", sa.Integer, nullable=False),
    sa.Column("ended", sa.Boolean, nullable=False),
    sa.Column("snapshot", sa.String(500)),
    sa.Column("snapshot_quality", sa.Float),
    sa.Column("age", sa.Float),
    sa.Column("age_spread", sa.Float),
    sa.Column("gender", sa.String(10)),
    sa.Column("gender_confidence", sa.Float),
    sa.Column("identity_samples", sa.Integer, nullable=False),
    sa.Column("attribute_samples", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
sa.Table(
    "samples",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("track_uid", sa.String(200), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("quality", sa.Float),
    sa.Column("name", sa.String(200)),
    sa.Column("distance", sa.Float),
    sa.Column("encoding", sa.Text),
    sa.Column("age", sa.Float),
    sa.Column("p_female", sa.Float),
)
sa.Table(
    "people",
    METADATA,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("created", sa.Float, nullable=False),
)
sa.Table(
    "encodings",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("person", sa.String(200), sa.ForeignKey("people.name"), nullable=False, index=True),
    sa.Column("encoding", sa.Text, nullable=False),
    sa.Column("source", sa.String(500)),
    sa.Column("created", sa.Float, nullable=False),
)
sa.Table(
    "unknowns",
    METADATA,
    sa.Column("name", sa.String(50), primary_key=True),
    sa.Column("centroid", sa.Text, nullable=False),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)
sa.Table(
    "negatives",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("person", sa.String(200), nullable=False, index=True),
    sa.Column("encoding", sa.Text, nullable=False),
    sa.Column("track_uid", sa.String(200)),
    sa.Column("created", sa.Float, nullable=False),
)
sa.Table(
    "track_aliases",
    METADATA,
    sa.Column("from_uid", sa.String(200), primary_key=True),
    sa.Column("into_uid", sa.String(200), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)


def upgrade() -> None:
    METADATA.create_all(op.get_bind())


def downgrade() -> None:
    METADATA.drop_all(op.get_bind())
