"""How Alembic reaches the run database.

``labctl.storage.upgrade`` hands over its open connection; the ``alembic``
command opens the database named by ``sqlalchemy.url`` or ``LABCTL_DB``.
SQLite cannot alter most of a table in place, so changes are rendered as
batch operations that rebuild the table.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from labctl import storage

config = context.config
target_metadata = storage.Base.metadata


def database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or storage.default_url()


def run_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        migrate(given)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    engine = storage.open_engine(database_url())
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":  # rebuilt tables keep their rows
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            storage.lock_schema(conn)
            migrate(conn)
            conn.commit()
    finally:
        engine.dispose()


def migrate(conn: Connection) -> None:
    context.configure(connection=conn, target_metadata=target_metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
