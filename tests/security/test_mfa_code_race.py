"""A TOTP code or a recovery code works once even when two hub processes on one PostgreSQL
database check it at the same instant: each read the user's row, found the code unspent and
spent it, so both sign-ins passed. Now the code is spent by an update that names what was
read, and the one that finds it changed is refused."""

import threading
import time

import orjson
import pyotp
import pytest
from sqlalchemy import insert, select

from flip.hub import mfa
from flip.hub.db import connect, users
from tests.conftest import POSTGRES_URL, fresh_database


@pytest.fixture
def engine():
    with fresh_database(POSTGRES_URL, "flip_hub") as url:
        engine = connect(url)
        yield engine
        engine.dispose()


def _user(engine, secret: str, codes: list[str]) -> int:
    stored = orjson.dumps([mfa._digest(c) for c in codes]).decode()
    with engine.begin() as conn:
        return conn.execute(
            insert(users).values(
                name="alice", role="researcher", totp_secret=secret, recovery_codes=stored
            )
        ).inserted_primary_key[0]


def _race(engine, uid: int, code: str) -> list[bool]:
    """Two transactions check `code` at once: the first holds its update uncommitted while
    the second checks; then the first commits."""
    first = engine.connect()
    first.begin()
    results: list[bool] = [mfa.accept(first, uid, code)]
    second_done = []

    def second() -> None:
        with engine.begin() as conn:
            second_done.append(mfa.accept(conn, uid, code))

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)  # the second has read the row and waits on the first's row lock
    first.commit()
    first.close()
    thread.join(30)
    return results + second_done


@pytest.mark.postgres
def test_a_recovery_code_checked_twice_at_once_works_once(engine):
    uid = _user(engine, pyotp.random_base32(), ["aaaa1111-bbbb2222", "cccc3333-dddd4444"])
    assert _race(engine, uid, "aaaa1111-bbbb2222") == [True, False]
    with engine.connect() as conn:
        left = orjson.loads(conn.execute(select(users.c.recovery_codes)).scalar_one())
    assert left == [mfa._digest("cccc3333-dddd4444")]


@pytest.mark.postgres
def test_a_totp_code_checked_twice_at_once_works_once(engine):
    secret = pyotp.random_base32()
    uid = _user(engine, secret, [])
    assert _race(engine, uid, pyotp.TOTP(secret).now()) == [True, False]
