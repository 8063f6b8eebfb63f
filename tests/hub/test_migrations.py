"""Hub migrations: a fresh database gets the models' schema exactly; re-running is a no-op."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from flip.hub.db import connect, metadata
from flip.hub.migrate import upgrade


def test_migrated_database_matches_the_models(hub_db_url):
    engine = connect(hub_db_url)
    connect(hub_db_url).dispose()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            "0019"
        ]
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == [], "the models changed: write a migration with flip.hub.migrate.revision"
    engine.dispose()


def test_an_existing_database_is_upgraded_not_rebuilt(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    engine = create_engine(url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (name, role, token_hash, created_at) "
                "VALUES ('kept', 'viewer', 'h', CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()
    again = create_engine(url)
    connect(url).dispose()
    with again.connect() as conn:
        rows = conn.execute(text("SELECT name, token_expires_at, password_hash FROM users")).all()
        assert rows == [("kept", None, None)]
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0019"
    again.dispose()
