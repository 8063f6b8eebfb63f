"""Tabular events travel as EventBlocks; a block must land exactly as its events one by one."""

from pathlib import Path

from sqlalchemy import func, select

from flip.data.cdm import schema
from flip.data.cdm.store import Store, open_store
from flip.data.ingest import Ingestor, ingest_path
from flip.data.sources import tabular
from flip.data.sources.records import MAX_KEY, EventBlock, SourceRecord
from flip.data.terminology.vocabulary import Vocabulary

#: Lab rows that exercise every check: a duplicate id whose later row wins, a dangling
#: patient, a date before birth, a future date, an implausible value, a unit that does not
#: convert for its code, a unit converted per code (in range and out of it), an unmapped
#: local code, an empty unit, zeros of both signs, and keys with NUL or over MAX_KEY.
AWKWARD_LABS = """\
dup-1,{p},LAB101,120,mm[Hg],2017-01-01 09:30
dup-1,{p},LAB101,125,mm[Hg],2017-01-02 09:30
dangling-1,NOBODY,LAB101,120,mm[Hg],2017-01-01 09:30
early-1,{p},LAB101,120,mm[Hg],1900-01-01 09:30
future-1,{p},LAB101,120,mm[Hg],2999-01-01 09:30
huge-1,{p},LAB101,1200,mm[Hg],2017-01-01 09:30
kg-1,{p},LAB101,80,kg,2017-01-01 09:30
creat-1,{p},LAB107,1.1,mg/dl,2017-01-01 09:30
creat-2,{p},LAB107,900,mg/dl,2017-01-01 09:30
unmapped-1,{p},LAB999,3,,2017-01-01 09:30
zero-1,{p},LAB999,0,,2017-01-01 09:30
zero-2,{p},LAB999,-0,,2017-01-01 09:30
zero-3,{p},LAB999,-0.0,,2017-01-01 09:30
nul\x00-1,{p},LAB101,120,mm[Hg],2017-01-01 09:30
{long},{p},LAB101,120,mm[Hg],2017-01-01 09:30
"""


def _ingest(folder: Path, store: Store, one_by_one: bool) -> dict[str, object]:
    spec = tabular.TableMapping.load(folder / "mapping.yaml")
    records: list[SourceRecord] = []
    for record in tabular.read_tables(spec, folder=folder):
        if one_by_one and isinstance(record, EventBlock):
            records.extend(record.records())
        else:
            records.append(record)
    vocabulary = Vocabulary.from_store(store).with_local_codes(spec.local_codes)
    report = Ingestor(store, vocabulary, "csv:blocks").run(records, kind="csv", uri=str(folder))
    return {k: v for k, v in report.as_dict().items() if k != "run_id"}


def _contents(store: Store) -> dict[str, list[tuple]]:
    """Every stored row of the clinical and provenance tables, leaving out run ids."""
    out = {}
    with store.connect() as conn:
        for name in (*schema.CLINICAL_TABLES, "source_record", "quarantine"):
            table = schema.metadata.tables[name]
            columns = [c for c in table.columns if c.name != "ingest_run_id"]
            rows = conn.execute(select(*columns)).all()
            out[name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def test_a_block_lands_exactly_as_its_events_one_by_one(exported, tmp_path, monkeypatch):
    _, patients, folder = exported("csv", n=30)
    labs = folder / "labs.csv"
    awkward = AWKWARD_LABS.format(p=patients[0].source_id, long="x" * (MAX_KEY + 1))
    labs.write_text(labs.read_text() + awkward)
    monkeypatch.setattr(tabular, "BLOCK_SIZE", 7)
    stores = {}
    reports = {}
    for one_by_one in (False, True):
        store = stores[one_by_one] = open_store(tmp_path / f"{one_by_one}.duckdb")
        store.create()
        reports[one_by_one] = _ingest(folder, store, one_by_one)
    assert reports[False] == reports[True]
    assert reports[False]["rules"] == {
        "reference.dangling": 1,
        "plausibility.before_birth": 1,
        "plausibility.future_date": 1,
        "plausibility.value_range": 2,
        "plausibility.unit_mismatch": 1,
        "source.key_too_long": 1,
    }
    assert [(k.split("|")[1], n) for k, n in reports[False]["unmapped"].items()] == [("LAB999", 4)]
    blocks, one_by_one = _contents(stores[False]), _contents(stores[True])
    assert blocks == one_by_one
    with stores[False].connect() as conn:
        m = schema.measurement.c
        zeros = conn.execute(
            select(m.value_source_value).where(m.measurement_source_value == "LAB999")
        ).scalars()
        assert sorted(zeros) == ["-0", "-0", "0", "3"]  # each zero as its sign was sent
    assert len(blocks["measurement"]) > 100 and blocks["note"] and blocks["condition_occurrence"]
    for store in stores.values():
        store.close()


def _events(folder: Path, monkeypatch, size: int) -> list:
    monkeypatch.setattr(tabular, "BLOCK_SIZE", size)
    spec = tabular.TableMapping.load(folder / "mapping.yaml")
    blocks = [r for r in tabular.read_tables(spec, folder=folder) if isinstance(r, EventBlock)]
    assert all(0 < len(b) <= size for b in blocks)
    return [event for block in blocks for event in block.events]


def test_block_size_does_not_change_what_is_read(exported, monkeypatch):
    _, _, folder = exported("csv", n=10)
    whole = _events(folder, monkeypatch, 20000)
    assert whole and _events(folder, monkeypatch, 1) == _events(folder, monkeypatch, 7) == whole


def test_reingesting_blocks_adds_nothing_and_a_changed_row_updates(store, exported, monkeypatch):
    _, _, folder = exported("csv", n=20)
    monkeypatch.setattr(tabular, "BLOCK_SIZE", 25)
    first = ingest_path(store, "csv", folder)
    counts = {t: _count(store, t) for t in first.rows}
    again = ingest_path(store, "csv", folder)
    assert again.loaded == 0 and again.unchanged == first.loaded
    labs = folder / "labs.csv"
    header, row, *rest = labs.read_bytes().decode().splitlines(keepends=True)
    cells = row.split(",")
    cells[3] = "177.7"
    labs.write_bytes("".join([header, ",".join(cells), *rest]).encode())
    third = ingest_path(store, "csv", folder)
    assert third.loaded == 1 and third.unchanged == first.loaded - 1
    assert counts == {t: _count(store, t) for t in first.rows}
    with store.connect() as conn:
        values = conn.execute(
            select(schema.measurement.c.value_as_number).where(
                schema.measurement.c.measurement_source_value == cells[2]
            )
        ).scalars()
        assert 177.7 in list(values)


def _count(store: Store, name: str) -> int:
    with store.connect() as conn:
        table = schema.metadata.tables[name]
        return conn.execute(select(func.count()).select_from(table)).scalar_one()
