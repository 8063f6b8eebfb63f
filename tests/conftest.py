"""Shared fixtures: small synthetic sites, stores on DuckDB and on the real PostgreSQL."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from flip.data.cdm.store import Store, open_store
from flip.synth import SiteProfile, generate_site
from flip.synth.export import export_site

POSTGRES_URL = os.environ.get(
    "FLIP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


MARIADB_URL = os.environ.get("FLIP_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def pytest_configure(config: pytest.Config) -> None:
    """Each xdist worker, and what it starts (flip subprocesses, Ray actors), uses one thread.

    With one worker per core, torch's default of one thread per core in every worker oversubscribes
    the machine and slows each training test several times over.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """When the selection runs slow tests too (CI), drop the short versions they cover."""
    if not any(item.get_closest_marker("slow") for item in items):
        return
    covered = [item for item in items if item.get_closest_marker("covered_by_slow")]
    if covered:
        config.hook.pytest_deselected(items=covered)
        items[:] = [item for item in items if not item.get_closest_marker("covered_by_slow")]


@contextmanager
def fresh_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new database on a real server (PostgreSQL or MariaDB), dropped afterwards.

    Skips when the server is unreachable, except in CI (CI=true), where it fails.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except OperationalError as exc:
        admin.dispose()
        if IN_CI:
            pytest.fail(f"{server_url} must be reachable in CI: {exc}")
        pytest.skip(f"{server_url} is not reachable: {exc}")
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        force = " WITH (FORCE)" if admin.dialect.name == "postgresql" else ""
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session."""
    with fresh_database(POSTGRES_URL, "flip_test") as url:
        yield url


@pytest.fixture(params=["duckdb", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path: Path) -> Iterator[Store]:
    """An empty, created CDM store on DuckDB, SQLite, and PostgreSQL (in its own schema)."""
    if request.param == "duckdb":
        s = open_store(tmp_path / "store.duckdb")
    elif request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    else:
        url = request.getfixturevalue("postgres_database")
        schema = f"s_{uuid.uuid4().hex[:10]}"
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


def build_site(
    root: Path, name: str, fmt: str, n: int, seed: int = 2, *, images: bool = False
) -> Path:
    """A synthetic site with its export (and, with `images`, its radiographs) ingested into
    its own store; returns its site.yaml."""
    from flip.config import SiteConfig
    from flip.data.ingest import ingest_path

    folder = root / name
    profile = small_profile(fmt, n, name=name)
    export_site(profile, generate_site(profile, seed), folder / "export", seed, images=images)
    store = open_store(folder / "store.duckdb")
    store.create()
    ingest_path(store, "csv" if fmt == "csv" else "fhir", folder / "export")
    if images:
        ingest_path(store, "dicom", folder / "export" / "dicom")
    store.close()
    SiteConfig(name=name, store="store.duckdb", ledger="ledger.sqlite").save(folder / "site.yaml")
    return folder / "site.yaml"


def mlp_site(root: Path, name: str = "alpha", n: int = 160) -> Path:
    """A CSV site (as `build_site`) whose policy also allows tabular-mlp tasks; its site.yaml."""
    from flip.config import SiteConfig

    path = build_site(root, name, "csv", n)
    config = SiteConfig.load(path)
    policy = config.policy.model_copy(
        update={"allowed_task_kinds": [*config.policy.allowed_task_kinds, "tabular-mlp"]}
    )
    config.model_copy(update={"policy": policy}).save(path)
    return path
