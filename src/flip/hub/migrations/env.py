"""Alembic environment: runs on the connection FLIP passes in (see flip.hub.migrate)."""

from alembic import context

from flip.hub.db import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
