"""The same synthetic patients exported as FHIR, a CSV extract and an HL7 v2 feed are one
person each in the store when the site's person identifier is the NHS number."""

from collections import defaultdict

from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.ingest import DEMOGRAPHICS_CONFLICT, SAME_PERSON, ingest_path
from flip.data.sources.identity import PersonIdentity
from flip.synth import SiteProfile, generate_site
from flip.synth.csv_export import write_csv_extract_truth
from flip.synth.fhir_export import NHS_NUMBER, write_ndjson
from flip.synth.hl7v2_export import NHS_AUTHORITY, NHS_TYPE, write_hl7v2_feed
from flip.synth.shapes import Shapes, nhs_number
from tests.data.accounting import assert_accounted

IDENTITY = PersonIdentity(NHS_NUMBER, authority=NHS_AUTHORITY, type_code=NHS_TYPE)


def _exports(tmp_path):
    profile = SiteProfile("kinds", 25, "fhir-ndjson", age_mean=60, smoker_rate=0.3)
    patients = generate_site(profile, 3)
    shapes = Shapes.none()
    write_ndjson(profile.name, patients, tmp_path / "fhir", shapes=shapes)
    write_csv_extract_truth(profile.name, patients, tmp_path / "csv", shapes)
    feed = write_hl7v2_feed(profile.name, patients, tmp_path / "hl7" / "feed.hl7")
    sources = [("fhir", tmp_path / "fhir"), ("csv", tmp_path / "csv"), ("hl7v2", feed)]
    return profile, patients, sources


def _persons_by_source(store) -> dict[str, set[int]]:
    """Source system -> the persons its condition rows name."""
    sr, co = schema.source_record, schema.condition_occurrence
    with store.connect() as conn:
        found = conn.execute(
            select(sr.c.source_system, co.c.person_id).join(
                co, co.c.condition_occurrence_id == sr.c.cdm_id
            )
        ).all()
    out = defaultdict(set)
    for system, person in found:
        out[system].add(person)
    return out


def test_three_kinds_of_export_give_one_person_per_patient(store, tmp_path):
    profile, patients, sources = _exports(tmp_path)
    reports = [ingest_path(store, k, p, person_identifier=IDENTITY) for k, p in sources]
    for report in reports:
        assert_accounted(store, report)
        assert DEMOGRAPHICS_CONFLICT not in report.warnings, report.conflicts[:3]
    assert [r.rows["person"] for r in reports] == [len(patients), 0, 0]
    assert reports[1].skipped_rules[SAME_PERSON] == len(patients)
    assert reports[2].skipped_rules[SAME_PERSON] == 3 * len(patients)  # ADT and two ORU
    with store.connect() as conn:
        persons = conn.execute(
            select(schema.person.c.person_id, schema.person.c.person_source_value)
        ).all()
    expected = {nhs_number(profile.name, int(p.source_id[3:])) for p in patients}
    assert {value for _, value in persons} == expected
    by_source = _persons_by_source(store)
    assert len(by_source) == 3
    with_conditions = sum(bool(p.conditions) for p in patients)
    assert all(len(ids) == with_conditions for ids in by_source.values())
    assert len(set.union(*by_source.values())) == with_conditions


def test_without_the_identifier_each_kind_has_its_own_persons(store, tmp_path):
    _, patients, sources = _exports(tmp_path)
    for kind, path in sources:
        assert_accounted(store, ingest_path(store, kind, path))
    with store.connect() as conn:
        count = len(conn.execute(select(schema.person.c.person_id)).all())
    assert count == 3 * len(patients)
