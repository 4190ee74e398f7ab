"""Alembic environment of the event store (run by :mod:`pipeline.migrations`).

The caller hands over an open connection in ``config.attributes["connection"]``, already
inside the transaction that holds the upgrade lock; there is no ``alembic.ini``.
"""

from __future__ import annotations

from alembic import context

from pipeline.store import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
