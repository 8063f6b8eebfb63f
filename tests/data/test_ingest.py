"""Ingest into DuckDB and PostgreSQL: mapping by domain, provenance, idempotency, quarantine."""

from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, inspect, select, text, update

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from flip.data.sources.tabular import MappingError, TableMapping


def _count(store, table) -> int:
    with store.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _measured(patients) -> int:
    """How many values the patients' exports carry: at baseline and at the closing review."""
    return sum(len(p.measurements) + len(p.review) for p in patients)


def test_fhir_bundles_land_as_cdm_rows_with_provenance(store, exported):
    _, patients, folder = exported("fhir-bundle")
    report = ingest_path(store, "fhir", folder)
    assert report.quarantined == 0
    assert _count(store, schema.person) == len(patients)
    expected_measurements = _measured(patients)
    assert _count(store, schema.measurement) == expected_measurements
    cdm_rows = sum(report.rows.values())
    assert _count(store, schema.source_record) == cdm_rows
    assert _count(store, schema.observation_period) == len(patients)
    with store.connect() as conn:
        unmapped = conn.execute(
            select(func.count()).where(schema.measurement.c.measurement_concept_id == 0)
        ).scalar_one()
    assert unmapped == 0


def test_csv_local_codes_map_by_domain(store, exported):
    _, patients, folder = exported("csv")
    report = ingest_path(store, "csv", folder)
    assert report.quarantined == 0 and not report.unmapped
    mi = [p for p in patients if "mi" in p.conditions]
    with store.connect() as conn:
        rows = (
            conn.execute(
                select(schema.condition_occurrence.c.condition_source_value).where(
                    schema.condition_occurrence.c.condition_concept_id == 4329847
                )
            )
            .scalars()
            .all()
        )
        smokers = conn.execute(
            select(func.count()).where(schema.observation.c.observation_concept_id == 4298794)
        ).scalar_one()
    assert len(rows) == len(mi) and set(rows) <= {"I21.9"}
    assert smokers == sum(p.smoker for p in patients)


def test_csv_units_are_respelled_and_converted_per_code(store, exported):
    _, patients, folder = exported("csv")
    assert "mg/dl" in (folder / "labs.csv").read_text()
    ingest_path(store, "csv", folder)
    m = schema.measurement
    with store.connect() as conn:
        rows = conn.execute(
            select(m.c.measurement_concept_id, m.c.value_as_number, m.c.unit_source_value)
        ).all()
        units = conn.execute(
            select(m.c.unit_concept_id).where(m.c.measurement_concept_id == 3020564).distinct()
        ).scalars()
        assert set(units) == {8749}  # stored in umol/L
    creatinine = sorted(v for concept, v, _ in rows if concept == 3020564)
    assert {u for c, _, u in rows if c == 3020564} == {"mg/dl"}  # the unit as sent
    expected = sorted(
        p.measurements["creatinine"] for p in patients if "creatinine" in p.measurements
    )
    assert len(creatinine) == len(expected) > 0
    assert all(abs(a - b) < 0.01 for a, b in zip(creatinine, expected, strict=True))
    assert {u for c, _, u in rows if c == 3019550} == {"mmol/L"}  # sodium: left as it was


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("factor: 88.42", "factor: lots"), r"labs\.csv.*non-zero 'factor'"),
        (("value: 11488-4", "value: ''"), r"letters.*exactly one of 'column' or 'value'"),
    ],
)
def test_a_broken_mapping_is_an_error_naming_its_table(exported, edit, message):
    _, _, folder = exported("csv")
    mapping = folder / "mapping.yaml"
    mapping.write_text(mapping.read_text().replace(*edit))
    with pytest.raises(MappingError, match=message):
        TableMapping.load(mapping)


def test_reingest_adds_nothing_and_a_changed_record_updates(store, exported):
    _, _patients, folder = exported("fhir-ndjson")
    first = ingest_path(store, "fhir", folder)
    before = {t: _count(store, schema.metadata.tables[t]) for t in first.rows}
    again = ingest_path(store, "fhir", folder)
    assert again.loaded == 0 and again.unchanged == first.loaded
    assert before == {t: _count(store, schema.metadata.tables[t]) for t in first.rows}

    path = folder / "Observation.ndjson"
    lines = path.read_bytes().splitlines()
    changed = orjson.loads(lines[0])
    changed["valueQuantity"]["value"] = 177.7
    lines[0] = orjson.dumps(changed)
    path.write_bytes(b"\n".join(lines) + b"\n")
    third = ingest_path(store, "fhir", folder)
    assert third.loaded == 1
    with store.connect() as conn:
        values = (
            conn.execute(
                select(schema.measurement.c.value_as_number).where(
                    schema.measurement.c.value_as_number == 177.7
                )
            )
            .scalars()
            .all()
        )
    assert values == [177.7]
    assert before["measurement"] == _count(store, schema.measurement)


def test_bad_records_are_quarantined_and_the_rest_loads(store, exported, tmp_path: Path):
    _, patients, folder = exported("fhir-ndjson", n=10)
    obs = folder / "Observation.ndjson"
    good = obs.read_bytes()
    first = orjson.loads(good.splitlines()[0])
    future = dict(first, id="future", effectiveDateTime="2999-01-01")
    dangling = dict(first, id="dangling", subject={"reference": "Patient/nobody"})
    invalid = {"resourceType": "Observation", "id": "nocode", "status": "final"}
    obs.write_bytes(
        good
        + b'{"resourceType": "Observation", "id": "trunc\n'
        + orjson.dumps(future)
        + b"\n"
        + orjson.dumps(dangling)
        + b"\n"
        + orjson.dumps(invalid)
        + b"\n"
    )
    report = ingest_path(store, "fhir", folder)
    assert report.rules == {
        "json.malformed": 1,
        "plausibility.future_date": 1,
        "reference.dangling": 1,
        "fhir.invalid": 1,
    }
    assert _count(store, schema.measurement) == _measured(patients)
    with store.connect() as conn:
        rows = conn.execute(select(schema.quarantine.c.location, schema.quarantine.c.raw)).all()
    assert all(loc.startswith(str(obs)) for loc, _ in rows)
    assert any(b"trunc" in raw for _, raw in rows)
    assert ingest_path(store, "fhir", folder).quarantined == 4
    assert _count(store, schema.quarantine) == 4


def test_a_non_utf8_csv_line_loads_read_as_windows_1252_with_a_warning(store, exported):
    _, patients, folder = exported("csv", n=10)
    labs = folder / "labs.csv"
    person = patients[0].source_id
    line = f"bad-1,{person},LAB101,1\xb50,mm[Hg],2017-01-01 09:30\n".encode("latin-1")
    labs.write_bytes(labs.read_bytes() + line)
    report = ingest_path(store, "csv", folder)
    assert report.quarantined == 0 and report.warnings["tabular.text_not_utf8"] == 1
    with store.connect() as conn:
        sent = conn.execute(
            select(schema.measurement.c.value_source_value).where(
                schema.measurement.c.value_source_value == "1\u00b50"
            )
        ).all()
    assert len(sent) == 1


def test_implausible_values_and_wrong_units_are_quarantined(store, exported):
    _, patients, folder = exported("fhir-ndjson", n=5)
    obs = folder / "Observation.ndjson"
    lines = obs.read_bytes().splitlines()
    first = orjson.loads(lines[0])
    assert first["code"]["coding"][0]["code"] == "8480-6"
    huge = dict(first, id="huge", valueQuantity={"value": 1200, "code": "mm[Hg]"})
    wrong_unit = dict(first, id="unit", valueQuantity={"value": 120, "code": "mg/dL"})
    obs.write_bytes(b"\n".join([*lines, orjson.dumps(huge), orjson.dumps(wrong_unit)]) + b"\n")
    report = ingest_path(store, "fhir", folder)
    assert report.rules == {"plausibility.value_range": 1, "plausibility.unit_mismatch": 1}
    assert _count(store, schema.measurement) == _measured(patients)


def test_parquet_files_read_through_the_same_mapping(store, exported):
    import pyarrow.csv
    import pyarrow.parquet
    import yaml

    _, patients, folder = exported("csv", n=30)
    labs = pyarrow.csv.read_csv(
        folder / "labs.csv",
        convert_options=pyarrow.csv.ConvertOptions(
            column_types={"patient_ref": "string", "lab_id": "string", "taken": "string"}
        ),
    )
    pyarrow.parquet.write_table(labs, folder / "labs.parquet")
    mapping = yaml.safe_load((folder / "mapping.yaml").read_text())
    mapping["events"][1]["file"] = "labs.parquet"
    (folder / "mapping.yaml").write_text(yaml.safe_dump(mapping))
    report = ingest_path(store, "csv", folder)
    assert report.quarantined == 0 and not report.unmapped
    assert _count(store, schema.measurement) == _measured(patients)


def test_record_key_index_exists_where_it_helps_and_comes_back_on_upgrade(store):
    duckdb = store.engine.dialect.name == "duckdb"

    def indexed() -> bool:
        with store.connect() as conn:
            if duckdb:
                query = "SELECT index_name FROM duckdb_indexes() WHERE table_name = 'source_record'"
                names = set(conn.exec_driver_sql(query).scalars())
            else:
                names = {
                    i["name"] for i in inspect(conn).get_indexes("source_record", store.schema)
                }
        return "ix_source_record_key" in names

    assert indexed() is not duckdb
    if duckdb:
        return
    with store.begin() as conn:
        conn.execute(
            text(
                "DROP INDEX "
                + (f'"{store.schema}".' if store.schema else "")
                + "ix_source_record_key"
            )
        )
        conn.execute(update(schema.flip_schema).values(version=3))
    store.create()
    assert indexed()


@pytest.mark.parametrize(("fmt", "kind"), [("csv", "csv"), ("fhir-ndjson", "fhir")])
def test_clinic_letters_land_in_the_note_table_with_their_text(store, exported, fmt, kind):
    _, patients, folder = exported(fmt, n=20)
    report = ingest_path(store, kind, folder)
    assert report.quarantined == 0 and report.rows["note"] == len(patients)
    with store.connect() as conn:
        stored = set(conn.execute(select(schema.note.c.note_text)).scalars())
    assert stored == {text for p in patients for _, text in p.notes}


def test_a_letter_without_text_is_quarantined_and_the_rest_load(store, exported):
    _, patients, folder = exported("csv", n=10)
    letters = folder / "letters.csv"
    letters.write_text(letters.read_text() + "empty-1,X,2017-01-01,\n")
    report = ingest_path(store, "csv", folder)
    assert report.rules == {"tabular.note.no_text": 1}
    assert _count(store, schema.note) == len(patients)
