"""Check that an ingest run accounts for every record it read, in its report and its tables."""

from __future__ import annotations

from sqlalchemy import func, select

from flip.data.cdm import schema
from flip.data.cdm.store import Store
from flip.data.ingest import SAME_PERSON, IngestReport


def assert_accounted(store: Store, report: IngestReport) -> None:
    """Every record read is loaded, unchanged, quarantined or skipped, and the run's row,
    its source_record (the rows its records produced) and quarantine rows and its tallies
    say the same as the report (rows written per table included), and its pruned and
    withdrawn records and rows too; its records that confirm another source's person are
    skipped ones, and each merge it applied is traced (role `merges`)."""
    assert report.read == (
        report.loaded + report.unchanged + report.quarantined + report.skipped
    ), report.as_dict()
    run = report.run_id
    with store.connect() as conn:
        stored = conn.execute(
            select(
                schema.ingest_run.c.records_read,
                schema.ingest_run.c.records_loaded,
                schema.ingest_run.c.records_unchanged,
                schema.ingest_run.c.records_quarantined,
                schema.ingest_run.c.records_skipped,
                schema.ingest_run.c.records_pruned,
                schema.ingest_run.c.records_withdrawn,
            ).where(schema.ingest_run.c.ingest_run_id == run)
        ).one()
        source = schema.source_record
        produced = (source.c.ingest_run_id == run, source.c.role.in_(schema.OWNED_ROLES))
        owned = (source.c.ingest_run_id == run, source.c.role != schema.CONFIRMS)
        keys = conn.execute(
            select(func.count(func.distinct(source.c.record_key))).where(*owned)
        ).scalar_one()
        linked = dict(
            conn.execute(
                select(source.c.cdm_table, func.count())
                .where(*produced)
                .group_by(source.c.cdm_table)
            ).all()
        )
        confirmed = conn.execute(
            select(func.count())
            .select_from(source)
            .where(source.c.ingest_run_id == run, source.c.role == schema.CONFIRMS)
        ).scalar_one()
        quarantined = conn.execute(
            select(func.count()).where(schema.quarantine.c.ingest_run_id == run)
        ).scalar_one()
        tallies = dict(
            conn.execute(
                select(schema.ingest_tally.c.rule, schema.ingest_tally.c.count)
                .where(schema.ingest_tally.c.ingest_run_id == run)
                .where(schema.ingest_tally.c.kind == "skipped")
            ).all()
        )
        withdrawn = dict(
            conn.execute(
                select(schema.ingest_tally.c.rule, schema.ingest_tally.c.count)
                .where(schema.ingest_tally.c.ingest_run_id == run)
                .where(schema.ingest_tally.c.kind == "withdrawn")
            ).all()
        )
        pruned = dict(
            conn.execute(
                select(schema.ingest_tally.c.rule, schema.ingest_tally.c.count)
                .where(schema.ingest_tally.c.ingest_run_id == run)
                .where(schema.ingest_tally.c.kind == "pruned")
            ).all()
        )
    assert tuple(stored) == (
        report.read,
        report.loaded,
        report.unchanged,
        report.quarantined,
        report.skipped,
        report.pruned,
        report.withdrawn,
    )
    assert keys == report.loaded, (keys, report.as_dict())
    # a patient record naming a person another source loaded is skipped, and traced to it
    assert confirmed <= report.skipped_rules.get(SAME_PERSON, 0), (confirmed, report.as_dict())
    assert linked == {t: n for t, n in report.rows.items() if n}, (linked, report.as_dict())
    assert quarantined == report.quarantined, (quarantined, report.as_dict())
    assert tallies == dict(report.skipped_rules)
    assert sum(tallies.values()) == report.skipped
    assert pruned == dict(report.pruned_rows), (pruned, report.as_dict())
    assert (report.pruned == 0) == (not report.pruned_rows), report.as_dict()
    assert withdrawn == dict(report.withdrawn_rows), (withdrawn, report.as_dict())
    assert (report.withdrawn == 0) == (not report.withdrawn_rows), report.as_dict()
