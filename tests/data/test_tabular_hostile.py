"""Tables through a mapping, as careless or hostile extracts send them: duplicate and
misaligned columns, mappings with every key of the wrong type, YAML that is not YAML."""

import copy
import gzip
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from flip.data.sources import tabular
from tests.data.accounting import assert_accounted

PATIENTS = "id,dob,sex\np1,1980-01-02,M\np2,1990-03-04,F\n"

MAPPING = {
    "source": "hostile",
    "nulls": ["NULL"],
    "csv": {"delimiter": ",", "encoding": "utf-8", "decimal": "."},
    "person": {
        "file": "patients.csv",
        "id": "id",
        "birth_date": {"column": "dob", "format": "%Y-%m-%d"},
        "gender": {"column": "sex", "values": {"M": "male"}},
        "death_date": {"column": "dob"},
    },
    "events": [
        {
            "file": "labs.csv",
            "name": "labs",
            "id": "lid",
            "person": "pid",
            "code": {
                "column": "code",
                "system": "http://loinc.org",
                "values": {"a": "b"},
                "empty": "skip",
            },
            "date": {"column": "when", "format": "%Y-%m-%d"},
            "value": "val",
            "text": "note",
            "unit": {
                "column": "unit",
                "values": {"mg/dl": "mg/dL"},
                "convert": [{"code": "2345-7", "from": "mmol/L", "to": "mg/dL", "factor": 18}],
            },
            "default_table": "measurement",
        },
        {
            "file": "labs.csv",
            "name": "ages",
            "id": "lid",
            "person": "pid",
            "code": {"value": "x", "system": "urn:x"},
            "date": {"age": "val", "unit": "years"},
        },
    ],
    "local_codes": {"urn:x": {"x": {"system": "http://loinc.org", "code": "1"}}},
}


def _folder(tmp_path: Path, labs: str, mapping: dict | None = None) -> Path:
    folder = tmp_path / "extract"
    folder.mkdir(exist_ok=True)
    (folder / "patients.csv").write_text(PATIENTS)
    (folder / "labs.csv").write_text(labs)
    (folder / "mapping.yaml").write_text(yaml.safe_dump(mapping or MAPPING, sort_keys=False))
    return folder


def _labs_mapping(value: str = "val") -> dict:
    return {
        "person": {"file": "patients.csv", "id": "id", "birth_date": "dob"},
        "events": [
            {
                "file": "labs.csv",
                "id": "lid",
                "person": "pid",
                "code": {"column": "code", "system": "http://loinc.org"},
                "date": "when",
                "value": value,
                "default_table": "measurement",
            }
        ],
    }


def test_a_column_named_twice_in_the_header_is_a_mapping_error_not_the_last_one(tmp_path):
    folder = _folder(
        tmp_path,
        "lid,pid,code,when,val,val\nL1,p1,2345-7,2020-01-01,5.5,99\n",
        _labs_mapping(),
    )
    mapping = tabular.TableMapping.load(folder / "mapping.yaml")
    with pytest.raises(tabular.MappingError, match=r"'value': column 'val' appears 2 times"):
        mapping.check(folder)


PEOPLE = "SELECT '1' AS id, '1980-01-02' AS dob UNION ALL SELECT '2', '1990-03-04'"


@pytest.mark.parametrize(
    ("server", "error"),
    [
        ("sqlite", tabular.SourceReadError),  # its probe renames the second id, its rows not
        pytest.param("postgres", tabular.MappingError, marks=pytest.mark.postgres),
    ],
)
def test_a_query_naming_a_column_twice_stops_rather_than_take_the_last(tmp_path, server, error):
    from flip.data.cdm.store import open_store
    from tests.conftest import POSTGRES_URL

    url = POSTGRES_URL if server == "postgres" else f"sqlite:///{tmp_path / 'source.db'}"
    doc = {
        "person": {"query": PEOPLE, "id": "id", "birth_date": "dob"},
        "events": [
            {
                "query": f"SELECT a.id, b.id, a.dob AS taken FROM ({PEOPLE}) a "
                f"JOIN ({PEOPLE}) b ON a.id <> b.id",
                "id": "taken",
                "person": "id",
                "code": {"value": "x", "system": "urn:x"},
                "date": "taken",
            }
        ],
    }
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump(doc))
    store = open_store(tmp_path / "store.duckdb")
    store.create()
    try:
        with pytest.raises(error, match=r"'id' (appears 2 times|more than once)"):
            ingest_path(store, "sql", tmp_path / "mapping.yaml", url=url)
        with store.connect() as conn:
            assert conn.execute(select(schema.observation)).first() is None
    finally:
        store.close()


def test_a_row_whose_cells_do_not_line_up_with_the_header_is_quarantined(store, tmp_path):
    labs = (
        "lid,pid,code,when,val\n"
        "L1,p1,2345-7,2020-01-01,5.5\n"
        "L2,p1,2345-7,see, below,2020-01-02,6.1\n"  # an unquoted comma shifts every cell
        "L3,p2,2345-7,2020-01-03,7.2,,\n"  # Excel's empty trailing cells are no shift
        "L4,p2,2345-7,2020-01\n"  # a line cut off
    )
    folder = _folder(tmp_path, labs, _labs_mapping())
    report = ingest_path(store, "csv", folder)
    assert_accounted(store, report)
    assert report.rules == {"tabular.row.misaligned": 2}, report.as_dict()
    assert report.loaded == 2 + 2 and report.warnings == {}
    with store.connect() as conn:
        where = conn.execute(select(schema.quarantine.c.location)).scalars().all()
    assert sorted(w.rsplit(":", 1)[1] for w in where) == ["3", "5"]


def _paths(doc, prefix=()):
    """The key path of every key and list item in a mapping document."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for key, value in items:
        yield (*prefix, key)
        if isinstance(value, dict | list):
            yield from _paths(value, (*prefix, key))


WRONG = [1, 2.5, True, None, "", [], ["x"], {}, {"a": 1}, [[1]], float("nan")]


def test_every_key_of_the_wrong_type_is_a_mapping_error_never_a_crash(tmp_path):
    labs = "lid,pid,code,when,val,unit,note\nL1,p1,2345-7,2020-01-01,5.5,mmol/L,hi\n"
    folder = _folder(tmp_path, labs)
    crashes = []
    for path in _paths(MAPPING):
        for wrong in WRONG:
            doc = copy.deepcopy(MAPPING)
            spec = doc
            for key in path[:-1]:
                spec = spec[key]
            spec[path[-1]] = wrong
            (folder / "mapping.yaml").write_text(yaml.safe_dump(doc))
            try:
                mapping = tabular.TableMapping.load(folder / "mapping.yaml")
                list(tabular.read_tables(mapping.check(folder, unit_known=bool), folder))
            except tabular.MappingError as exc:
                assert "\n" not in str(exc)
            except Exception as exc:  # any other failure is the finding
                crashes.append(f"{path} = {wrong!r}: {exc!r}")
    assert crashes == []


def test_a_conversion_factor_that_is_not_a_finite_nonzero_number_is_a_mapping_error(tmp_path):
    doc = copy.deepcopy(MAPPING)
    for factor in (".nan", ".inf", "0"):
        text_ = yaml.safe_dump(doc).replace("factor: 18", f"factor: {factor}")
        (tmp_path / "mapping.yaml").write_text(text_)
        with pytest.raises(tabular.MappingError, match=r"'unit.convert\[0\]': .*finite"):
            tabular.TableMapping.load(tmp_path / "mapping.yaml")


def test_yaml_with_a_tab_says_what_and_where_in_one_line(tmp_path):
    (tmp_path / "mapping.yaml").write_text("person:\n\tfile: patients.csv\n")
    with pytest.raises(tabular.MappingError) as caught:
        tabular.TableMapping.load(tmp_path / "mapping.yaml")
    assert "\n" not in str(caught.value)
    assert "found character '\\t'" in str(caught.value) and "line 2, column 1" in str(caught.value)


def test_the_mappings_own_conversion_keeps_the_value_and_unit_as_sent_and_rounds(store, tmp_path):
    labs = (
        "lid,pid,code,when,val,unit\n"
        "L1,p1,CREA,2020-01-01,1.1,mg/dl\n"  # converted, on the block path
        "L2,p1,CREA,2020-01-01,<0.5,mg/dL\n"  # converted, with a comparator
        "L3,p1,CREA,2020-01-01,see note,mg/dL\n"  # not a number: nulled, its text kept
        "L4,p2,CREA,2020-01-01,80,umol/l\n"  # a spelling fixed, nothing converted
    )
    doc = _labs_mapping()
    doc["events"][0]["code"]["system"] = "urn:lab"
    doc["events"][0]["unit"] = {
        "column": "unit",
        "values": {"mg/dl": "mg/dL", "umol/l": "umol/L"},
        "convert": [{"code": "CREA", "from": "mg/dL", "to": "umol/L", "factor": 88.42}],
    }
    folder = _folder(tmp_path, labs, doc)
    report = ingest_path(store, "csv", folder)
    assert_accounted(store, report)
    m = schema.measurement
    with store.connect() as conn:
        rows = conn.execute(
            select(
                m.c.measurement_source_value,
                m.c.value_as_number,
                m.c.value_source_value,
                m.c.unit_source_value,
                m.c.unit_concept_id,
                m.c.operator_concept_id,
            )
        ).all()
    umol = 8749  # UCUM umol/L
    assert sorted((tuple(r[1:]) for r in rows), key=lambda r: r[1]) == [
        (97.262, "1.1", "mg/dl", umol, None),
        (80.0, "80", "umol/l", umol, None),
        (44.21, "<0.5", "mg/dL", umol, 4171756),
        (None, "see note", "mg/dL", umol, None),
    ]


EUROPEAN_PATIENTS = (
    'id;dob;sex;name\r\np1;1980-01-02;M;José\r\np2;1990-03-04;F;"Müller;\r\nAnna"\r\n'
)
EUROPEAN_LABS = (
    "lid;pid;code;when;val\r\nL1;p1;2345-7;2020-01-01;5,5\r\nL2;p2;2345-7;2020-01-01;<0,5\r\n"
)


def _european(tmp_path: Path, csv_format: dict | None) -> Path:
    folder = tmp_path / "excel"
    folder.mkdir()
    (folder / "patients.csv").write_bytes(EUROPEAN_PATIENTS.encode("cp1252"))
    (folder / "labs.csv").write_bytes(EUROPEAN_LABS.encode("cp1252"))
    doc = _labs_mapping()
    doc["events"][0]["unit"] = {"value": "mmol/L"}
    if csv_format:
        doc["csv"] = csv_format
    (folder / "mapping.yaml").write_text(yaml.safe_dump(doc))
    return folder


def test_an_excel_export_with_semicolons_decimal_commas_and_cp1252_loads_whole(store, tmp_path):
    folder = _european(tmp_path, {"delimiter": ";", "decimal": ",", "encoding": "cp1252"})
    report = ingest_path(store, "csv", folder)
    assert_accounted(store, report)
    assert report.loaded == 4 and report.quarantined == 0 and report.warnings == {}
    m = schema.measurement
    with store.connect() as conn:
        rows = conn.execute(select(m.c.value_source_value, m.c.operator_concept_id)).all()
    assert sorted(rows, key=repr) == sorted([("5.5", None), ("<0,5", 4171756)], key=repr)


def test_utf16_gzipped_and_bom_files_load_as_the_omop_reader_reads_them(store, tmp_path):
    folder = _european(tmp_path, {"delimiter": ";", "decimal": ","})
    (folder / "patients.csv").write_bytes(b"\xef\xbb\xbf" + EUROPEAN_PATIENTS.encode())
    (folder / "labs.csv").write_bytes(gzip.compress(EUROPEAN_LABS.encode("utf-16")))
    report = ingest_path(store, "csv", folder)
    assert_accounted(store, report)
    assert report.loaded == 4 and report.quarantined == 0 and report.warnings == {}


def test_a_semicolon_file_read_as_commas_says_which_delimiter_to_set(tmp_path):
    folder = _european(tmp_path, None)
    mapping = tabular.TableMapping.load(folder / "mapping.yaml")
    with pytest.raises(tabular.MappingError, match=r"'file': .* set csv: \{delimiter: ';'\}"):
        mapping.check(folder)


@pytest.mark.parametrize(
    ("csv_format", "key"),
    [
        ({"delimiter": ";;"}, "csv.delimiter"),
        ({"encoding": "klingon"}, "csv.encoding"),
        ({"decimal": ";", "delimiter": ";"}, "csv.decimal"),
        ({"quote": "'"}, "csv.quote"),
    ],
)
def test_a_bad_csv_format_is_a_mapping_error(tmp_path, csv_format, key):
    folder = _european(tmp_path, csv_format)
    with pytest.raises(tabular.MappingError, match=rf"mapping: '{key}'"):
        tabular.TableMapping.load(folder / "mapping.yaml")


def test_nul_characters_and_overlong_ids_never_stop_a_csv_run(store, tmp_path):
    """NUL in a cell and a 300-character id: PostgreSQL refused the whole batch."""
    labs = "lid,pid,code,when,val\n"
    labs += "1,p1,LAB\x00101,2020-01-02,5.5\n"
    labs += f"{'9' * 300},p1,LAB101,2020-01-03,5.5\n"
    labs += "3,p\x002,LAB101,2020-01-04,5.5\n"
    folder = _folder(tmp_path, labs=labs, mapping=_labs_mapping())
    report = ingest_path(store, "csv", folder)
    assert_accounted(store, report)
    assert report.rules == {"source.key_too_long": 1}
    assert report.warnings["text.nul_removed"] == 1
    m = schema.measurement
    with store.connect() as conn:
        codes = conn.execute(select(m.c.measurement_source_value)).scalars().all()
    assert sorted(codes) == ["LAB101", "LAB101"]
