"""Shared fixtures: small synthetic sites, stores on DuckDB and on the real PostgreSQL."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flip.data.cdm.store import Store, open_store
from flip.synth import SiteProfile, generate_site
from flip.synth.export import export_site

POSTGRES_URL = os.environ.get(
    "FLIP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _postgres_or_skip() -> None:
    import psycopg

    try:
        psycopg.connect(
            POSTGRES_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=3
        ).close()
    except psycopg.OperationalError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL must run in CI: {exc}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    _postgres_or_skip()
    import psycopg

    name = f"flip_test_{uuid.uuid4().hex[:10]}"
    admin_url = POSTGRES_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path: Path) -> Iterator[Store]:
    """An empty, created CDM store on DuckDB, and on PostgreSQL in its own schema."""
    if request.param == "duckdb":
        s = open_store(tmp_path / "store.duckdb")
    else:
        url = request.getfixturevalue("postgres_database")
        schema = f"s_{uuid.uuid4().hex[:10]}"
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
        s = open_store(url, schema=schema)
    s.create()
    yield s
    s.close()


def small_profile(fmt: str, n: int = 40, name: str | None = None) -> SiteProfile:
    """A small site exporting in `fmt`."""
    base = SiteProfile(
        name=name or f"test-{fmt}", n_patients=n, export_format=fmt, age_mean=60, smoker_rate=0.3
    )
    return dataclasses.replace(base)


@pytest.fixture
def exported(tmp_path: Path):
    """Write a small site's export; returns (profile, patients, folder)."""

    def make(fmt: str, n: int = 40):
        profile = small_profile(fmt, n)
        patients = generate_site(profile, seed=1)
        folder = export_site(profile, patients, tmp_path / f"export-{fmt}")
        return profile, patients, folder

    return make
