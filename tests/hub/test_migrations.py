"""Hub migrations: a fresh database gets the models' schema exactly; re-running is a no-op."""

from datetime import datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.exc import IntegrityError

from flip.hub.access import find_user
from flip.hub.app import create_app
from flip.hub.auth import new_token, token_hash
from flip.hub.db import connect, metadata, now, users
from flip.hub.migrate import upgrade

HEAD = "0024"


def test_migrated_database_matches_the_models(hub_db_url):
    engine = connect(hub_db_url)
    connect(hub_db_url).dispose()
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        assert versions == [HEAD]
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
        rows = conn.execute(text("SELECT name, role, password_hash FROM users")).all()
        assert rows == [("kept", "viewer", None)]
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    again.dispose()


def test_upgrading_from_0019_carries_each_users_token_over_as_its_hash(hub_db_url):
    """0020 moves the one token per user into named tokens: the token keeps working, only
    its hash is stored, and a revoked user's token is not carried over."""
    token, revoked = new_token("flip_u"), new_token("flip_u")
    engine = create_engine(hub_db_url)
    upgrade(engine, "0019")
    made, expires = now() - timedelta(days=1), now() + timedelta(days=30)
    with engine.begin() as conn:
        insert = text(
            "INSERT INTO users (name, role, token_hash, token_prefix, token_created_at,"
            " token_expires_at, revoked_at, created_at)"
            " VALUES (:name, 'researcher', :hash, :prefix, :made, :expires, :revoked, :made)"
        )
        conn.execute(
            insert,
            {"name": "kept", "hash": token_hash(token), "prefix": token[:12], "made": made}
            | {"expires": expires, "revoked": None},
        )
        conn.execute(
            insert,
            {"name": "gone", "hash": token_hash(revoked), "prefix": None, "made": made}
            | {"expires": expires, "revoked": made},
        )
    engine.dispose()
    app = create_app(hub_db_url)
    with app.state.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        rows = conn.execute(text("SELECT name, token_hash, prefix FROM api_tokens")).all()
    assert [(r.token_hash, r.prefix) for r in rows] == [(token_hash(token), token[:12])]
    with TestClient(app) as http:
        kept = http.get("/api/v1/projects", headers={"Authorization": f"Bearer {token}"})
        assert kept.status_code == 200, kept.text
        listed = http.get("/api/v1/users/1/tokens", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200, listed.text
        assert [(t["name"], t["state"]) for t in listed.json()] == [("default", "active")]
        dead = http.get("/api/v1/projects", headers={"Authorization": f"Bearer {revoked}"})
        assert dead.status_code == 401
    app.state.engine.dispose()


def test_upgrading_from_0021_gives_an_unused_enrolment_token_a_week(hub_db_url):
    """0022: a pending site's token, made when tokens never ended, works 7 days from the
    upgrade, then no more; an enrolled site's row gets no end."""
    token = new_token("flip_e")
    engine = create_engine(hub_db_url)
    upgrade(engine, "0021")
    with engine.begin() as conn:
        insert = text(
            "INSERT INTO sites (name, enrolment_hash, credential_hash, status, created_at)"
            " VALUES (:name, :enrolment, :credential, :status, :made)"
        )
        conn.execute(
            insert,
            {"name": "waiting", "enrolment": token_hash(token), "credential": None}
            | {"status": "pending", "made": now() - timedelta(days=400)},
        )
        conn.execute(
            insert,
            {"name": "enrolled", "enrolment": None, "credential": "c", "status": "active"}
            | {"made": now()},
        )
    engine.dispose()
    engine = connect(hub_db_url)
    with engine.connect() as conn:
        ends = dict(conn.execute(text("SELECT name, enrolment_expires_at FROM sites")).all())
    engine.dispose()
    assert ends["enrolled"] is None
    left = (
        ends["waiting"]
        if isinstance(ends["waiting"], datetime)
        else datetime.fromisoformat(ends["waiting"])
    ) - now()
    assert timedelta(days=6, hours=23) < left <= timedelta(days=7)


def test_upgrading_a_database_with_twin_user_names_keeps_both(hub_db_url, caplog):
    """0023 on names that differ only by case: the upgrade succeeds and names them, each twin
    still signs in by its exact name, any other case finds the oldest, and no third twin
    can be made."""
    engine = create_engine(hub_db_url)
    upgrade(engine, "0022")
    with engine.begin() as conn:
        for name in ("Rita", "rita", "sam"):
            conn.execute(
                text("INSERT INTO users (name, role, created_at) VALUES (:n, 'viewer', :t)"),
                {"n": name, "t": now()},
            )
    engine.dispose()
    with caplog.at_level("WARNING"):
        engine = connect(hub_db_url)
    assert "'Rita' and 'rita' differ only by case" in caplog.text
    with engine.begin() as conn:
        keys = dict(conn.execute(text("SELECT name, name_key FROM users")).all())
        assert keys == {"Rita": "rita", "rita": None, "sam": "sam"}
        assert [find_user(conn, n).name for n in ("Rita", "rita", "RITA")] == [
            "Rita",
            "rita",
            "Rita",
        ]
        with pytest.raises(IntegrityError):
            conn.execute(insert(users).values(name="RITA", role="viewer"))
    engine.dispose()


def test_upgrading_from_0023_gives_a_one_time_password_a_week(hub_db_url):
    """0024: a one-time password made when they never ended works 7 days from the upgrade;
    a password the user chose gets no end."""
    engine = create_engine(hub_db_url)
    upgrade(engine, "0023")
    with engine.begin() as conn:
        for name, one_time in (("new", True), ("settled", False)):
            conn.execute(
                text(
                    "INSERT INTO users (name, name_key, role, password_hash, password_one_time,"
                    " created_at) VALUES (:n, :n, 'viewer', 'h', :o, :t)"
                ),
                {"n": name, "o": one_time, "t": now()},
            )
    engine.dispose()
    engine = connect(hub_db_url)
    with engine.connect() as conn:
        ends = dict(conn.execute(select(users.c.name, users.c.password_expires_at)).all())
    engine.dispose()
    assert ends["settled"] is None
    assert timedelta(days=6, hours=23) < ends["new"] - now() <= timedelta(days=7)
