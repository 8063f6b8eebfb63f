"""An ingest run checkpoints its DuckDB store once, as it closes, not every batch or two."""

from pathlib import Path

from flip.data.cdm.store import Store, open_store
from flip.data.ingest import ingest_path
from flip.data.sources import tabular


def _threshold(store: Store) -> str:
    with store.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT current_setting('checkpoint_threshold')").scalar_one()


def _wal(path: Path) -> int:
    wal = path.with_name(path.name + ".wal")
    return wal.stat().st_size if wal.exists() else 0


def test_an_ingest_run_checkpoints_as_it_closes_not_every_batch(exported, tmp_path, monkeypatch):
    _, _, folder = exported("csv", n=20)
    monkeypatch.setattr(tabular, "BLOCK_SIZE", 25)  # many batches
    path = tmp_path / "store.duckdb"
    store = open_store(path)
    store.create()
    with store.engine.connect() as conn:
        conn.exec_driver_sql("SET checkpoint_threshold = '1KB'")  # every batch is past it
    before = _threshold(store)
    logged: list[int] = []
    report = ingest_path(store, "csv", folder, progress=lambda _: logged.append(_wal(path)))
    assert report.loaded > 100 and len(logged) > 5
    assert logged == sorted(logged) and logged[-1] > 100_000  # the log grew, batch by batch
    assert _wal(path) == 0  # ... and the run's close checkpointed it
    assert _threshold(store) == before
    store.close()
    reopened = open_store(path)
    assert ingest_path(reopened, "csv", folder).unchanged == report.loaded
    reopened.close()


def test_nested_holds_end_with_the_outermost(tmp_path):
    store = open_store(tmp_path / "store.duckdb")
    store.create()
    before = _threshold(store)
    with store.fewer_checkpoints():
        held = _threshold(store)
        with store.fewer_checkpoints():
            pass
        assert _threshold(store) == held != before
    assert _threshold(store) == before
    store.close()
