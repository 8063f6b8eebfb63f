"""Ingest a source by kind: pick its reader, then run it through an Ingestor.

The read stage lives in `flip.data.sources` (one reader per source kind); this module
only chooses the reader, names the source system and sets up the vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import create_engine, delete, insert, select

from flip.data.cdm import schema
from flip.data.cdm.store import Store
from flip.data.ingest.ingestor import Ingestor
from flip.data.ingest.report import IngestReport
from flip.data.sources.identity import PersonIdentity
from flip.data.sources.records import SourceRecord
from flip.data.terminology.vocabulary import Vocabulary


def ingest_path(
    store: Store,
    kind: str,
    path: Path,
    *,
    mapping: Path | None = None,
    url: str | None = None,
    schema_name: str | None = None,
    source_system: str | None = None,
    progress: Callable[[int], None] | None = None,
    code_systems: dict[str, str] | None = None,
    person_identifier: PersonIdentity | str | None = None,
    reading: Iterable[SourceRecord] | None = None,
    prune: bool = False,
    date_order: str | None = None,
) -> IngestReport:
    """Ingest FHIR (`fhir`) or HL7 v2 (`hl7v2`) files, DICOM, or tables through a mapping.

    `csv` reads the CSV/Parquet files a mapping names under the folder `path`
    (mapping default: PATH/mapping.yaml); `sql` runs the mapping's queries on
    `url`, with `path` the mapping file. `omop` reads an OMOP CDM (v5.3 or v5.4)
    export folder (CSV or Parquet files) at `path`, or the database at `url` (tables in
    `schema_name`); its day- or month-first dates (`01/02/2020`) are read in `date_order`
    ("dmy" or "mdy"), and without one quarantined or nulled as `omop.date_order_unknown`.
    `dicom` reads DICOM files under `path`, or a PACS's DICOMweb (QIDO-RS) root at `url`.
    `source_system` names the source for
    provenance and record identity; it defaults to the kind and the file or
    folder name, so moving files keeps identities (HL7 v2: `hl7v2` for every file,
    as the listener, since a feed's identifiers hold across the files it is split into).
    `code_systems` are the site's declared code system names, URIs or OIDs -> OMOP
    vocabulary_id (site.yaml `code_systems`).
    `person_identifier` (fhir, hl7v2, csv, sql) is the site's person identifier (a FHIR
    identifier system, or a PersonIdentity that also says how HL7 v2 PID-3 carries it):
    patients with the same value are one person across resources, sources and kinds;
    `reading` (fhir) the records of `path` already being read (`fhir_ahead.read_path_ahead`).
    With `prune`, `path` is a full re-export of the source system: what earlier runs of
    it loaded and this one does not read is removed (flip.data.ingest.prune); without a
    `source_system`, only what was loaded from the same location (two folders of one name
    share a default system). An HL7 v2 feed is partial by nature: pruning it needs an
    explicit `source_system`.
    """
    if prune and kind == "hl7v2" and source_system is None:
        raise ValueError(
            "an HL7 v2 feed is partial: --prune would remove every earlier message's records;"
            " name the source system (--system) whose full re-export this is"
        )
    identity = PersonIdentity.of(person_identifier)
    vocabulary = Vocabulary.from_store(store).with_code_systems(code_systems or {})
    located = str(path.resolve()) if path is not None else None
    if kind in ("fhir", "hl7v2"):  # each source kind imports only its reader
        if kind == "hl7v2":
            from flip.data.sources import hl7v2

            records, name = hl7v2.read_path(path, identity), source_system or hl7v2.FEED
        elif reading is not None:
            records, name = reading, source_system or f"fhir:{path.name}"
        else:
            from flip.data.sources import fhir

            records = fhir.read_path(path, identity)
            name = source_system or f"fhir:{path.name}"
        scope = None if source_system else located
        ingestor = Ingestor(store, vocabulary, name, prune=prune, prune_from=scope)
        return ingestor.run(records, kind=kind, uri=str(located), progress=progress)
    if kind == "dicom":
        from flip.data.sources import dicom, dicomweb

        if url:
            records, where = dicomweb.read_server(url), url.rstrip("/")
            name = source_system or f"dicomweb:{where}"
        else:
            records, where = dicom.read_path(path), str(located)
            name = source_system or f"dicom:{path.name}"
        scope = None if source_system else where
        ingestor = Ingestor(store, vocabulary, name, prune=prune, prune_from=scope)
        ingestor.know_persons_by_source_value(dicom.MRN_PREFIX)
        return ingestor.run(records, kind=kind, uri=where, progress=progress)
    if kind == "omop":
        from flip.data.sources import omop

        name = source_system or f"omop:{path.name if path else 'database'}"
        engine = create_engine(url) if url else None
        where = engine.url.render_as_string(hide_password=True) if engine else str(located)
        scope = None if source_system else where
        ingestor = Ingestor(
            store,
            vocabulary,
            name,
            derive_periods=False,
            prune=prune,
            prune_from=scope,
            interpretation=f"date_order={date_order}" if date_order else "",
        )
        if engine is None:
            records = omop.read_folder(path, date_order)
            return ingestor.run(records, kind=kind, uri=where, progress=progress)
        try:
            records = omop.read_database(engine, schema_name, date_order)
            return ingestor.run(records, kind=kind, uri=where, progress=progress)
        finally:
            engine.dispose()
    if kind in ("csv", "sql"):
        from flip.data.sources import tabular
        from flip.data.sources.readahead import read_ahead

        spec = tabular.TableMapping.load(
            mapping or (path / "mapping.yaml" if kind == "csv" else path)
        )
        vocabulary = vocabulary.with_local_codes(spec.local_codes)
        ingestor = Ingestor(
            store, vocabulary, source_system or f"{kind}:{spec.source}", prune=prune
        )
        known = vocabulary.unit
        if kind == "csv":
            spec = spec.check(folder=path, unit_known=known)
            records = read_ahead(tabular.read_tables, spec, path, None, identity)
            return ingestor.run(records, kind=kind, uri=str(path), progress=progress)
        if not url:
            raise ValueError("a sql source needs --url (any SQLAlchemy database URL)")
        engine = create_engine(url)
        try:
            spec = spec.check(engine=engine, unit_known=known)
            records = tabular.read_tables(spec, engine=engine, identity=identity)
            where = engine.url.render_as_string(hide_password=True)
            return ingestor.run(records, kind=kind, uri=where, progress=progress)
        finally:
            engine.dispose()
    raise ValueError(f"unknown source kind {kind!r}: expected fhir, hl7v2, csv, sql, omop or dicom")


def ingest_fhir_server(
    store: Store,
    base_url: str,
    *,
    bulk: bool = False,
    incremental: bool = True,
    source_system: str | None = None,
    headers: dict[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    code_systems: dict[str, str] | None = None,
    person_identifier: PersonIdentity | str | None = None,
    prune: bool = False,
) -> IngestReport:
    """Ingest from a FHIR server by paged search, or by Bulk Data `$export` when `bulk`.

    With `incremental`, only what changed since the last successful run is asked
    for (the server's `_lastUpdated` / `_since`); the new high-water mark is saved
    only when the run completes. `prune` (see ingest_path) needs a full pull, not an
    incremental one.
    """
    import httpx

    if prune and incremental:
        raise ValueError("--prune needs everything the server holds: add --full")

    from flip.data.sources import fhir_rest

    system = source_system or f"fhir:{base_url.rstrip('/')}"
    state = schema.source_state
    with store.connect() as conn:
        since = (
            conn.execute(
                select(state.c.value).where(
                    state.c.source_system == system, state.c.name == "since"
                )
            ).scalar_one_or_none()
            if incremental
            else None
        )
    watermark = fhir_rest.Watermark()
    reader = fhir_rest.bulk_export if bulk else fhir_rest.search
    vocabulary = Vocabulary.from_store(store).with_code_systems(code_systems or {})
    ingestor = Ingestor(store, vocabulary, system, prune=prune)
    with httpx.Client(timeout=60.0, headers=headers or {}, follow_redirects=True) as client:
        records = reader(
            client,
            base_url,
            since=since,
            watermark=watermark,
            person_identifier=person_identifier,
        )
        report = ingestor.run(
            records, kind="fhir-bulk" if bulk else "fhir-search", uri=base_url, progress=progress
        )
    if watermark.value and incremental:
        with store.begin() as conn:
            conn.execute(
                delete(state).where(state.c.source_system == system, state.c.name == "since")
            )
            conn.execute(
                insert(state).values(source_system=system, name="since", value=watermark.value)
            )
    return report
