"""Bring a hub database to the newest schema with Alembic (`flip hub migrate`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine


def _config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("flip.hub") / "migrations"))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration the database lacks, in one transaction per run."""
    with (
        engine.connect() as connection,
        _foreign_keys_checked_at_the_end(connection),
        connection.begin(),
    ):
        command.upgrade(_config(connection), revision)
        _check_foreign_keys(connection)


@contextmanager
def _foreign_keys_checked_at_the_end(connection: Connection) -> Iterator[None]:
    """On SQLite, turn foreign key enforcement off while migrations run (a batch rebuild
    drops and recreates a table other rows refer to); `_check_foreign_keys` checks them
    all before the commit, and enforcement is as it was after."""
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.dbapi_connection
    enforced = raw.execute("PRAGMA foreign_keys").fetchone()[0]
    raw.execute("PRAGMA foreign_keys=OFF")  # outside a transaction, where SQLite heeds it
    try:
        yield
    finally:
        raw.execute(f"PRAGMA foreign_keys={'ON' if enforced else 'OFF'}")


def _check_foreign_keys(connection: Connection) -> None:
    """Refuse to commit migrations that left a row referring to one that does not exist."""
    if connection.dialect.name == "sqlite":
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")


def revision(engine: Engine, message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    with engine.begin() as connection:
        command.revision(_config(connection), message=message, autogenerate=True)
