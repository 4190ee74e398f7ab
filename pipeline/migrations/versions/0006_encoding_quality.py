"""Enrolled photos record their face quality (the open-set rule's enrolment gate).

``encodings.quality``: the face quality (size x sharpness x frontal pose,
``pipeline/recognition/quality.py``) of an enrolment photo, or of the best sample of a
track enrolled by naming an unknown-N. NULL for rows enrolled before this revision (and
for callers that do not know it): such a row counts as good enough. With it, a person's
low-quality photos do not count when they have a better one
(``recognition.min_enrol_quality``).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("encodings", sa.Column("quality", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("encodings") as batch:
        batch.drop_column("quality")
