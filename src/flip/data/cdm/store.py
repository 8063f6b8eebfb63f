"""Open, create and migrate a site's OMOP CDM store on DuckDB, SQLite or PostgreSQL."""

from __future__ import annotations

import importlib.abc
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Table,
    create_engine,
    exists,
    func,
    insert,
    inspect,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.pool import NullPool

from flip.data.cdm.schema import (
    MERGED,
    PRODUCED,
    SCHEMA_VERSION,
    concept,
    flip_schema,
    metadata,
    person,
    source_record,
)
from flip.private_files import private_database


class StoreError(RuntimeError):
    """The store cannot be used as it is; the message says what to do."""


def store_url(location: str | Path) -> str:
    """Turn a file path into a DuckDB URL; leave SQLAlchemy URLs as they are."""
    text = str(location)
    if "://" in text:
        return text
    return f"duckdb:///{Path(text).resolve()}"


#: The WAL size past which DuckDB checkpoints at a commit while `Store.fewer_checkpoints`
#: holds: a checkpoint rewrites each table's growing key index whole, so a run of many
#: batches checkpoints once instead of every batch or two.
RUN_CHECKPOINT_THRESHOLD = "1GB"


@dataclass
class Store:
    """A site's standard store: one SQLAlchemy engine over the CDM and provenance tables."""

    engine: Engine
    schema: str | None = None
    _checkpoint_holds: int = field(default=0, repr=False, compare=False)
    _checkpoint_threshold: str | None = field(default=None, repr=False, compare=False)

    @contextmanager
    def fewer_checkpoints(self) -> Iterator[None]:
        """On DuckDB, let the write-ahead log grow past its usual threshold (16 MB) while
        this holds; the first commit after it checkpoints as any commit past the threshold
        does. Every commit is still durable in the log. Elsewhere, nothing. Nested holds
        end with the outermost."""
        if self.engine.dialect.name != "duckdb":
            yield
            return
        if self._checkpoint_holds == 0:
            with self.engine.connect() as conn:
                self._checkpoint_threshold = conn.exec_driver_sql(
                    "SELECT current_setting('checkpoint_threshold')"
                ).scalar_one()
                conn.exec_driver_sql(f"SET checkpoint_threshold = '{RUN_CHECKPOINT_THRESHOLD}'")
        self._checkpoint_holds += 1
        try:
            yield
        finally:
            self._checkpoint_holds -= 1
            if self._checkpoint_holds == 0:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql(
                        f"SET checkpoint_threshold = '{self._checkpoint_threshold}'"
                    )

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction: everything in it commits together or not at all."""
        with self.engine.begin() as conn:
            yield self._translated(conn)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reading."""
        with self.engine.connect() as conn:
            yield self._translated(conn)

    def _translated(self, conn: Connection) -> Connection:
        if self.schema is None:
            return conn
        return conn.execution_options(schema_translate_map={None: self.schema})

    def create(self) -> None:
        """Create or migrate the schema to SCHEMA_VERSION; load the starter vocabulary if empty."""
        from flip.data.terminology.athena import load_athena, starter_folder

        with self.begin() as conn:
            existed = inspect(conn).has_table(source_record.name, schema=self.schema)
            version = self._version(conn)
            _refuse_newer(version)
            metadata.create_all(conn)
            if version < SCHEMA_VERSION:
                if existed:  # an older store: create_all made only its new tables
                    _migrate(conn, version, self.schema)
                conn.execute(flip_schema.delete())
                conn.execute(
                    insert(flip_schema).values(
                        version=SCHEMA_VERSION, migrated_at=datetime.now(UTC).replace(tzinfo=None)
                    )
                )
            empty = conn.execute(select(func.count()).select_from(concept)).scalar_one() == 0
        if empty:
            load_athena(self, starter_folder())

    def _version(self, conn: Connection) -> int:
        if not inspect(conn).has_table("flip_schema", schema=self.schema):
            return 0
        return int(conn.execute(select(func.max(flip_schema.c.version))).scalar() or 0)

    def check(self) -> None:
        """Raise StoreError unless the store exists at FLIP's schema version."""
        with self.connect() as conn:
            version = self._version(conn)
        _refuse_newer(version)
        if version < SCHEMA_VERSION:
            what = "has no FLIP schema" if version == 0 else f"is at schema version {version}"
            raise StoreError(
                f"the store {what} (FLIP needs {SCHEMA_VERSION}): run `flip site init --store URL`"
            )

    def close(self) -> None:
        """Release every connection."""
        self.engine.dispose()


def _refuse_newer(version: int) -> None:
    """Raise StoreError for a store a newer FLIP wrote: this one would misread or damage it."""
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store is at schema version {version}, newer than this FLIP reads "
            f"({SCHEMA_VERSION}): upgrade FLIP (pip install -U flip-platform) to use it"
        )


def _migrate(conn: Connection, version: int, schema: str | None) -> None:
    """Bring every table of a store at schema `version` to SCHEMA_VERSION: re-key the tables
    whose key changed since (7: source_record), add every column any table gained, trace
    identifiers merged away before 8 to their survivor."""
    if version < 7:
        _rebuild(conn, source_record, schema)
    for table in metadata.sorted_tables:
        _add_missing_columns(conn, table, schema)
    if version < 8:
        _route_retired(conn)
    if conn.dialect.name != "duckdb":  # DuckDB keeps no index there (see schema)
        for index in source_record.indexes:
            index.create(conn, checkfirst=True)


def _route_retired(conn: Connection) -> None:
    """Trace the patient records of persons merged away before schema 8 (their person gone,
    their provenance left naming it) to the survivor as retired identifiers (role merged),
    so that what later comes under them files there. The survivor is the person now owning
    the rows the same message gave (same source system and content hash); a record whose
    message gave no other row stays as it was."""
    orphans = conn.execute(
        select(
            source_record.c.source_system,
            source_record.c.record_key,
            source_record.c.cdm_id,
            source_record.c.content_hash,
        ).where(
            source_record.c.cdm_table == "person",
            source_record.c.role == PRODUCED,
            ~exists().where(person.c.person_id == source_record.c.cdm_id),
        )
    ).all()
    for system, key, old_id, digest in orphans:
        survivors: set[int] = set()
        siblings = select(source_record.c.cdm_table, source_record.c.cdm_id).where(
            source_record.c.source_system == system,
            source_record.c.content_hash == digest,
            source_record.c.cdm_table.not_in(("person", "death", "observation_period")),
        )
        for name, cdm_id in conn.execute(siblings).all():
            table = metadata.tables[name]
            if "person_id" in table.c:
                primary = next(iter(table.primary_key.columns))
                found = conn.execute(select(table.c.person_id).where(primary == cdm_id))
                survivors.update(pid for pid in found.scalars() if pid and pid != old_id)
        if len(survivors) != 1:
            continue
        conn.execute(
            update(source_record)
            .where(source_record.c.cdm_table == "person", source_record.c.cdm_id == old_id)
            .where(source_record.c.source_system == system, source_record.c.record_key == key)
            .values(cdm_id=survivors.pop(), role=MERGED)
        )


def _qualified(conn: Connection, name: str, schema: str | None) -> str:
    quote = conn.dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)


def _add_missing_columns(conn: Connection, table: Table, schema: str | None) -> None:
    """Add the columns a table gained since an older store was created: counters default
    to 0, columns with a server default to it, other columns to null."""
    name = _qualified(conn, table.name, schema)
    have = set(conn.execute(text(f"SELECT * FROM {name} LIMIT 0")).keys())
    for column in table.columns:
        if column.name not in have:
            kind = column.type.compile(dialect=conn.dialect)
            default = " DEFAULT 0" if isinstance(column.type, Integer) else ""
            if column.server_default is not None:
                default = f" DEFAULT '{column.server_default.arg}'"
            conn.execute(text(f"ALTER TABLE {name} ADD COLUMN {column.name} {kind}{default}"))


def _rebuild(conn: Connection, table: Table, schema: str | None) -> None:
    """Re-create a table whose key changed, keeping its rows (columns it gained take their
    defaults): copied aside, dropped with its indexes, created anew, copied back."""
    name = _qualified(conn, table.name, schema)
    aside = _qualified(conn, f"{table.name}_migrating", schema)
    have = list(conn.execute(text(f"SELECT * FROM {name} LIMIT 0")).keys())
    kept = ", ".join(c.name for c in table.columns if c.name in have)
    conn.execute(text(f"CREATE TABLE {aside} AS SELECT {kept} FROM {name}"))
    conn.execute(text(f"DROP TABLE {name}"))
    table.create(conn)
    conn.execute(text(f"INSERT INTO {name} ({kept}) SELECT {kept} FROM {aside}"))
    conn.execute(text(f"DROP TABLE {aside}"))


class _Refused(importlib.abc.MetaPathFinder):
    """A finder that refuses a package: its import fails at once, before any path is searched."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == self.package or name.startswith(f"{self.package}."):
            raise ModuleNotFoundError(f"{self.package} is not used by this command", name=name)
        return None


def _forgo(package: str) -> None:
    """For the rest of this process, `import package` fails at once (unless it is imported)."""
    if package in sys.modules:
        return
    if not any(type(f) is _Refused and f.package == package for f in sys.meta_path):
        sys.meta_path.insert(0, _Refused(package))


def forgo_pandas() -> None:
    """For the rest of this process, `import pandas` fails at once (unless it is imported).

    DuckDB (binding a parameter) and pyarrow (building an array from a list) import pandas
    when it is installed, to learn whether a value is one of its types: a second or more
    of a command's start-up that FLIP's store code never needs. pyarrow then remembers
    pandas as absent, so only a process that does nothing but read and write its store
    (`flip site ingest`) calls this.
    """
    _forgo("pandas")


def forgo_numpy() -> None:
    """For the rest of this process, `import numpy` (and pandas, which needs it) fails at
    once (unless it is imported).

    pyarrow imports numpy when it is installed, a fifth of a second or more, though the
    store builds its Arrow batches from Python lists and needs none. Only a process that
    maps and writes records read elsewhere (`flip site ingest fhir` of files, whose reader
    is a child process) calls this.
    """
    forgo_pandas()
    _forgo("numpy")


@contextmanager
def values_in(conn: Connection, column: ColumnElement, values: list) -> Iterator[ColumnElement]:
    """`column IN values` for a long list of values.

    DuckDB's binder costs a failed `import pandas` per bound parameter, so there the
    values travel as one registered Arrow column instead of thousands of parameters.
    """
    if conn.dialect.name != "duckdb" or len(values) < 50:
        yield column.in_(values)
        return
    import pyarrow as pa  # on DuckDB only: a fifth of a second to import

    name = f"flip_values_{uuid.uuid4().hex[:12]}"
    raw = conn.connection.dbapi_connection
    raw.register(name, pa.table({"v": values}))
    try:
        yield column.in_(select(literal_column("v")).select_from(text(name)))
    finally:
        raw.unregister(name)


def _columns(rows: list[dict[str, object]], columns: list[str]) -> list[list[object]]:
    """Rows as columns; fast (C-level) when every row has every column."""
    if all(len(r) == len(columns) for r in rows):
        try:
            getter = itemgetter(*columns)
            values = [getter(r) for r in rows]
            if len(columns) == 1:
                return [values]
            return [list(column) for column in zip(*values, strict=True)]
        except KeyError:
            pass
    return [[r.get(c) for r in rows] for c in columns]


def bulk_insert(conn: Connection, table: Table, rows: list[dict[str, object]]) -> None:
    """Insert rows (dicts may name different columns) in the caller's transaction.

    On DuckDB the rows go in as one Arrow batch, several times faster than executemany.
    """
    insert_columns(conn, table, row_columns(table, rows))


def row_columns(table: Table, rows: list[dict[str, object]]) -> dict[str, list[object]]:
    """Rows (dicts that may name different columns) as the table's columns they use."""
    if not rows:
        return {}
    present = set().union(*rows)
    columns = [c.name for c in table.columns if c.name in present]
    return dict(zip(columns, _columns(rows, columns), strict=True))


def insert_columns(conn: Connection, table: Table, columns: dict[str, list[object]]) -> None:
    """Insert rows given column by column (equal-length lists) in the caller's transaction."""
    names = list(columns)
    if not names or not columns[names[0]]:
        return
    if conn.dialect.name != "duckdb":
        rows = zip(*columns.values(), strict=True)
        conn.execute(insert(table), [dict(zip(names, r, strict=True)) for r in rows])
        return
    import pyarrow as pa  # on DuckDB only: a fifth of a second to import

    batch = pa.table(columns)
    schema = conn.get_execution_options().get("schema_translate_map", {}).get(None)
    target = f'"{schema}"."{table.name}"' if schema else f'"{table.name}"'
    raw = conn.connection.dbapi_connection
    raw.register("flip_bulk_batch", batch)
    try:
        raw.execute(f"INSERT INTO {target} BY NAME SELECT * FROM flip_bulk_batch")
    finally:
        raw.unregister("flip_bulk_batch")


def open_store(
    location: str | Path, *, read_only: bool = False, schema: str | None = None
) -> Store:
    """Open a store by path or URL; a DuckDB store opened read-only can be shared by processes.

    A store file it creates is private to this user (0600, in folders it makes 0700).

    A writable store keeps its connections pooled until `close()`; a read-only one
    closes each connection after use, so it never holds the file longer than a query.
    """
    url = store_url(location)
    private_database(url, create=not read_only)
    connect_args: dict[str, object] = {}
    if url.startswith("duckdb"):
        connect_args["read_only"] = read_only
    pool = {"poolclass": NullPool} if read_only else {}
    engine = create_engine(url, connect_args=connect_args, **pool)
    return Store(engine=engine, schema=schema)
