"""Alembic environment: zonecat passes its own connection in ``config.attributes['connection']``."""

from __future__ import annotations

from alembic import context

from zonecat.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # used only by `alembic revision --autogenerate` during development
    import sqlalchemy as sa

    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
