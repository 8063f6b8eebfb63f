"""Issue 19 item 15 and item 6 for the network data-quality view: the quality and
harmonisation releases leave out opted-out persons (so their count is not the difference
between a quality total and a released count), and a part whose complement is a small
count is withheld with it (rows - part would tell the small count)."""

from sqlalchemy import func, select, update

from flip.data.cdm import schema
from flip.data.cohort import CohortDefinition, count_cohort
from flip.data.cohort.optout import load_optout
from flip.data.features.harmonisation import HarmonisationSpec, harmonisation_release
from flip.data.ingest import ingest_path
from flip.data.validate.released import quality_release


def _shown(fraction: dict) -> list[int]:
    return [v for v in (fraction["rows"], fraction["part"]) if isinstance(v, int)]


def test_quality_and_harmonisation_releases_leave_out_opted_out_persons(store, exported, tmp_path):
    _, patients, folder = exported("fhir-bundle", n=60)
    ingest_path(store, "fhir", folder)
    spec = HarmonisationSpec(kind="harmonisation", concept_ids=[201826, 3004249, 3027018])
    before = harmonisation_release(store, spec, 1)
    optout = tmp_path / "optout.txt"
    optout.write_text("\n".join(p.source_id for p in patients[:3]) + "\n")
    load_optout(store, optout, 10)

    released = quality_release(store, 10)
    persons = released["completeness"]["person.year_of_birth"]["rows"]
    assert persons == count_cohort(store, CohortDefinition(name="all")) == 57
    checks = {c["name"]: c for c in released["checks"]}
    assert checks["completeness.gender"]["checked"] == 57
    after = harmonisation_release(store, spec, 1)
    m, person = schema.measurement, schema.person
    with store.connect() as conn:
        gone = conn.execute(
            select(func.count())
            .select_from(m.join(person, person.c.person_id == m.c.person_id))
            .where(
                m.c.measurement_concept_id.in_([3004249, 3027018]),
                person.c.person_source_value.in_([p.source_id for p in patients[:3]]),
            )
        ).scalar_one()
    before_rows = sum(c["rows"] for c in before["concepts"].values())
    after_rows = sum(c["rows"] for c in after["concepts"].values())
    assert gone > 0 and before_rows - after_rows >= gone


def test_a_part_whose_rest_is_a_small_count_is_withheld(store, exported):
    _, _, folder = exported("fhir-bundle", n=60)
    ingest_path(store, "fhir", folder)
    person = schema.person
    with store.begin() as conn:
        conn.execute(update(person).values(ethnicity_concept_id=0))
        ids = select(person.c.person_id).order_by(person.c.person_id).limit(57)
        chosen = list(conn.execute(ids).scalars())
        conn.execute(
            update(person)
            .where(person.c.person_id.in_(chosen))
            .values(ethnicity_concept_id=38003564)
        )
    released = quality_release(store, 10)
    ethnicity = released["completeness"]["person.ethnicity_concept_id"]
    assert ethnicity["rows"] == 60 and ethnicity["share"] is None
    assert ethnicity["part"] is None, "60 - 57 would tell the 3 with no ethnicity"
    fractions = [*released["completeness"].values(), *released["unmapped"].values()]
    fractions += [released["units"], *released["units"]["by_concept"]]
    for fraction in fractions:
        if len(_shown(fraction)) == 2:
            assert not 0 < fraction["rows"] - fraction["part"] < 10, fraction
    for check in released["checks"]:
        if isinstance(check["failed"], int) and isinstance(check["checked"], int):
            assert not 0 < check["checked"] - check["failed"] < 10, check
