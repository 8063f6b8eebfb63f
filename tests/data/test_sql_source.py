"""SQL sources (any SQLAlchemy URL) through a mapping, on the real PostgreSQL and MariaDB."""

import re
from contextlib import contextmanager

import pytest
import yaml
from sqlalchemy import create_engine, func, select, text

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from flip.data.sources.tabular import SourceReadError
from flip.synth import generate_site
from tests.conftest import MARIADB_URL, POSTGRES_URL, fresh_database, small_profile

LOINC = {"sbp": "8480-6", "total_chol": "2093-3", "hdl": "2085-9"}


@contextmanager
def _warehouse(kind: str):
    """An EHR-replica-like database with patients and lab results from the synthetic world."""
    server = POSTGRES_URL if kind == "postgres" else MARIADB_URL
    with fresh_database(server, "flip_src") as url:
        patients = generate_site(small_profile("csv", 500, name="warehouse"), seed=5)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text("CREATE TABLE patients (patient_ref VARCHAR(20), dob DATE, sex VARCHAR(1))")
            )
            conn.execute(
                text(
                    "CREATE TABLE labs (lab_id VARCHAR(40), patient_ref VARCHAR(20), "
                    "test_code VARCHAR(10), result NUMERIC(10,2), units VARCHAR(20), "
                    "taken TIMESTAMP)"
                )
            )
            conn.execute(
                text("INSERT INTO patients VALUES (:r, :d, :s)"),
                [{"r": p.source_id, "d": p.birth_date, "s": p.sex[0].upper()} for p in patients],
            )
            labs = [
                {
                    "id": f"{p.source_id}-{k}-{i}",
                    "r": p.source_id,
                    "c": k,
                    "v": p.measurements[k],
                    "u": {"sbp": "mm[Hg]"}.get(k, "mmol/L"),
                    "t": p.index_date,
                }
                for p in patients
                for k in LOINC
                if k in p.measurements
                for i in range(5)
            ]
            conn.execute(text("INSERT INTO labs VALUES (:id, :r, :c, :v, :u, :t)"), labs)
        engine.dispose()
        yield kind, url, patients, len(labs)


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "mariadb"])
def warehouse(request):
    with _warehouse(request.param) as w:
        yield w


@pytest.fixture
def pg_warehouse():
    with _warehouse("postgres") as w:
        yield w


def _mapping(tmp_path, labs_query: str = "SELECT * FROM labs ORDER BY lab_id"):
    doc = {
        "source": "warehouse",
        "person": {
            "query": "SELECT * FROM patients",
            "name": "patients",
            "id": "patient_ref",
            "birth_date": {"column": "dob"},
            "gender": {"column": "sex", "values": {"M": "male", "F": "female"}},
        },
        "events": [
            {
                "query": labs_query,
                "name": "labs",
                "id": "lab_id",
                "person": "patient_ref",
                "code": {"column": "test_code", "system": "urn:warehouse:lab"},
                "date": {"column": "taken"},
                "value": "result",
                "unit": "units",
                "default_table": "measurement",
            }
        ],
        "local_codes": {
            "urn:warehouse:lab": {
                k: {"system": "http://loinc.org", "code": v} for k, v in LOINC.items()
            }
        },
    }
    path = tmp_path / "warehouse.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _count(store, table):
    with store.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_sql_source_loads_and_reloads_idempotently(store, warehouse, tmp_path):
    _, url, patients, labs = warehouse
    mapping = _mapping(tmp_path)
    report = ingest_path(store, "sql", mapping, url=url)
    assert report.quarantined == 0, report.rules
    assert _count(store, schema.person) == len(patients)
    assert _count(store, schema.measurement) == labs
    with store.connect() as conn:
        unmapped = conn.execute(
            select(func.count()).where(schema.measurement.c.measurement_concept_id == 0)
        ).scalar()
    assert unmapped == 0
    again = ingest_path(store, "sql", mapping, url=url)
    assert again.loaded == 0 and again.unchanged == len(patients) + labs


@pytest.mark.postgres
def test_a_source_that_drops_mid_read_writes_nothing_half_and_says_where(
    store, pg_warehouse, tmp_path
):
    _, url, patients, labs = pg_warehouse
    assert labs > 6000
    dying = (
        "SELECT *, CASE WHEN row_number() OVER (ORDER BY lab_id) = 6000 "
        "THEN pg_terminate_backend(pg_backend_pid()) END AS boom FROM labs ORDER BY lab_id"
    )
    with pytest.raises(
        SourceReadError, match=r"#labs: the source stopped after row (\d+)"
    ) as failure:
        ingest_path(store, "sql", _mapping(tmp_path, dying), url=url)
    stopped_at = int(re.search(r"after row (\d+)", str(failure.value)).group(1))
    assert 0 < stopped_at < 6000
    with store.connect() as conn:
        status = conn.execute(select(schema.ingest_run.c.status)).scalars().all()
    assert status == ["failed"]
    assert _count(store, schema.person) == 0 and _count(store, schema.measurement) == 0
    report = ingest_path(store, "sql", _mapping(tmp_path), url=url)
    assert report.loaded == len(patients) + labs


@pytest.mark.postgres
def test_query_columns_match_despite_case_and_a_bad_query_is_a_mapping_error(
    store, pg_warehouse, tmp_path
):
    from flip.data.sources.tabular import MappingError
    from tests.data.accounting import assert_accounted

    _, url, patients, labs = pg_warehouse
    path = _mapping(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["person"]["id"] = " Patient_Ref "
    doc["events"][0]["value"] = "RESULT"
    doc["events"][0]["query"] += " ;\n"
    path.write_text(yaml.safe_dump(doc))
    report = ingest_path(store, "sql", path, url=url)
    assert_accounted(store, report)
    assert report.loaded == len(patients) + labs and report.unchanged == 0
    doc["events"][0]["query"] = "SELECT * FROM no_such_table"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(MappingError, match=r"events\[0\] \(labs\): 'query': the database refused"):
        ingest_path(store, "sql", path, url=url)
    with store.connect() as conn:
        runs = conn.execute(select(func.count()).select_from(schema.ingest_run)).scalar_one()
    assert runs == 1
