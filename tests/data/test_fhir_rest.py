"""FHIR servers over real HTTP: paged search, incremental `_lastUpdated`, and Bulk `$export`."""

from datetime import datetime

import pytest
from sqlalchemy import func, select

from flip.data.cdm import schema
from flip.data.ingest import ingest_fhir_server
from flip.hub.server import BackgroundServer
from flip.synth import generate_site
from flip.synth.fhir_export import _patient_resources
from tests.conftest import small_profile
from tests.data.accounting import assert_accounted
from tests.data.fhir_server import FhirServer

FIRST = "2024-01-01T00:00:00Z"


@pytest.fixture
def server():
    profile = small_profile("fhir-ndjson", 40, name="rest")
    resources = [
        dict(r, meta={"lastUpdated": FIRST})
        for p in generate_site(profile, 3)
        for r in _patient_resources("rest", p)
    ]
    fhir = FhirServer(resources)
    http = BackgroundServer(fhir.app).start()
    yield fhir, f"{http.url}/fhir", resources
    http.stop()


def _count(store, table):
    with store.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


@pytest.mark.parametrize("bulk", [False, True], ids=["search", "bulk"])
def test_server_ingest_is_complete_then_incremental(store, server, bulk):
    fhir, base, resources = server
    report = ingest_fhir_server(store, base, bulk=bulk)
    assert report.quarantined == 0, report.rules
    assert report.read == len(resources)
    assert _count(store, schema.person) == 40
    if not bulk:
        pages = [r for r in fhir.requests if r.startswith("GET /fhir/Observation")]
        assert len(pages) > 1, "search must follow next links"

    changed = dict(
        next(
            r
            for r in resources
            if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "8480-6"
        )
    )
    changed.update(
        valueQuantity={
            "value": 181.0,
            "code": "mm[Hg]",
            "unit": "mm[Hg]",
            "system": "http://unitsofmeasure.org",
        },
        meta={"lastUpdated": "2024-06-01T00:00:00Z"},
    )
    fhir.put(changed)
    fhir.requests.clear()
    again = ingest_fhir_server(store, base, bulk=bulk)
    assert again.read == 1 and again.loaded == 1
    query = "_since=2024-01-01" if bulk else "_lastUpdated=gt2024-01-01"
    assert any(query in r.replace("%3A", ":") for r in fhir.requests)
    with store.connect() as conn:
        assert 181.0 in conn.execute(select(schema.measurement.c.value_as_number)).scalars().all()
    third = ingest_fhir_server(store, base, bulk=bulk)
    assert third.read == 0


def test_server_errors_are_named(store, server):
    _, base, _ = server
    from flip.data.sources.fhir_rest import FhirServerError

    with pytest.raises(FhirServerError, match="404"):
        ingest_fhir_server(store, base.replace("/fhir", "/nope"), incremental=False)
    with store.connect() as conn:
        assert conn.execute(select(schema.ingest_run.c.status)).scalars().all() == ["failed"]


@pytest.mark.parametrize("bulk", [False, True], ids=["search", "bulk"])
def test_server_ingest_applies_status_rules_and_person_identity(store, bulk):
    nhs, meta = "https://fhir.nhs.uk/Id/nhs-number", {"lastUpdated": FIRST}
    person = {"identifier": [{"system": nhs, "value": "9434765919"}], "birthDate": "1960-01-01"}
    lab = {
        "resourceType": "Observation",
        "meta": meta,
        "status": "final",
        "subject": {"reference": "Patient/b"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "effectiveDateTime": "2020-01-02T08:00:00+01:00",
        "valueQuantity": {"value": 2.5, "comparator": "<", "code": "mmol/L"},
    }
    resources = [
        {"resourceType": "Patient", "id": "a", "meta": meta, **person},
        {"resourceType": "Patient", "id": "b", "meta": meta, **person},
        dict(lab, id="o1"),
        dict(lab, id="o2", status="entered-in-error"),
    ]
    http = BackgroundServer(FhirServer(resources).app).start()
    try:
        report = ingest_fhir_server(store, f"{http.url}/fhir", bulk=bulk, person_identifier=nhs)
    finally:
        http.stop()
    assert report.skipped_rules == {"person.identifier.known": 1, "fhir.status.entered_in_error": 1}
    assert _count(store, schema.person) == 1
    with store.connect() as conn:
        row = conn.execute(
            select(
                schema.measurement.c.operator_concept_id, schema.measurement.c.measurement_datetime
            )
        ).one()
    assert row == (4171756, datetime(2020, 1, 2, 8, 0))
    assert_accounted(store, report)


def test_bulk_ingest_applies_the_manifest_deletions_and_lists_its_error_files(store):
    meta = {"lastUpdated": FIRST}
    lab = {
        "resourceType": "Observation",
        "meta": meta,
        "status": "final",
        "subject": {"reference": "Patient/a"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "effectiveDateTime": "2020-01-02T08:00:00Z",
        "valueQuantity": {"value": 5.5, "code": "mmol/L"},
    }
    patient = {"resourceType": "Patient", "id": "a", "meta": meta, "birthDate": "1960-01-01"}
    fhir = FhirServer([patient, dict(lab, id="o1"), dict(lab, id="o2")], polls_before_ready=0)
    http = BackgroundServer(fhir.app).start()
    try:
        ingest_fhir_server(store, f"{http.url}/fhir", bulk=True)
        fhir.delete("Observation", "o1", "2024-02-01T00:00:00Z")
        fhir.errors.append({"resourceType": "OperationOutcome"})
        report = ingest_fhir_server(store, f"{http.url}/fhir", bulk=True)
    finally:
        http.stop()
    assert report.skipped_rules == {"fhir.deleted": 1}, report.as_dict()
    assert _count(store, schema.measurement) == 1
    assert [url.rsplit("/", 1)[-1] for url in report.unread] == ["err0"]
    assert_accounted(store, report)
