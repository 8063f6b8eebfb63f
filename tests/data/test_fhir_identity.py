"""Who a FHIR patient is (a business identifier), and who treated them (provider, care site)."""

import json
from pathlib import Path

from typer.testing import CliRunner

from flip.cli.app import app
from flip.data.ingest import DEMOGRAPHICS_CONFLICT, SAME_PERSON, ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

NHS = "https://fhir.nhs.uk/Id/nhs-number"
MRN = "http://hospital.smarthealthit.org"
SAMPLE = Path(__file__).parent / "fixtures" / "fhir" / "synthea_excerpt.json"
SYNTHEA = "https://github.com/synthetichealth/synthea"


def patient(id_, nhs, born="1950-10-24", gender="female", mrn=None):
    identifiers = [{"system": NHS, "value": nhs}]
    if mrn:
        identifiers.append({"system": MRN, "value": mrn})
    return {
        "resourceType": "Patient",
        "id": id_,
        "identifier": identifiers,
        "gender": gender,
        "birthDate": born,
    }


def condition(id_, subject, code="44054006"):
    return {
        "resourceType": "Condition",
        "id": id_,
        "subject": {"reference": subject},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "onsetDateTime": "2020-01-02",
    }


def test_two_patient_resources_with_one_identifier_are_one_person(store, tmp_path):
    resources = [
        patient("a", "9434765919"),
        patient("b", "9434765919", mrn="M-7"),
        condition("c1", "Patient/a"),
        condition("c2", "Patient/b", code="38341003"),
        condition("c3", f"Patient?identifier={NHS}|9434765919", code="195967001"),
    ]
    path = write_ndjson(tmp_path / "one.ndjson", resources)
    report = ingest_path(store, "fhir", path, person_identifier=NHS)
    assert report.skipped_rules == {SAME_PERSON: 1}
    assert report.warnings == {}
    [person] = rows(store, "person")
    assert person["person_source_value"] == "9434765919"
    assert {r["person_id"] for r in rows(store, "condition_occurrence")} == {person["person_id"]}
    assert len(rows(store, "condition_occurrence")) == 3
    assert_accounted(store, report)
    again = ingest_path(store, "fhir", path, person_identifier=NHS)
    assert (again.loaded, again.unchanged, again.skipped) == (0, 4, 1)
    assert_accounted(store, again)


def test_without_an_identifier_system_each_patient_resource_is_a_person(store, tmp_path):
    resources = [patient("a", "9434765919"), patient("b", "9434765919")]
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "two.ndjson", resources))
    assert report.rows["person"] == 2
    assert_accounted(store, report)


def test_one_person_across_two_sources_and_conflicts_are_reported(store, tmp_path):
    gp = [patient("gp-1", "9434765919"), condition("gp-c", "Patient/gp-1")]
    hospital = [
        patient("h-77", "9434765919", born="1951-10-24"),
        condition("h-c", "Patient/h-77", code="38341003"),
    ]
    first = ingest_path(
        store,
        "fhir",
        write_ndjson(tmp_path / "gp.ndjson", gp),
        person_identifier=NHS,
        source_system="gp",
    )
    assert_accounted(store, first)
    second = ingest_path(
        store,
        "fhir",
        write_ndjson(tmp_path / "hospital.ndjson", hospital),
        person_identifier=NHS,
        source_system="hospital",
    )
    assert second.skipped_rules == {SAME_PERSON: 1}
    assert second.warnings == {DEMOGRAPHICS_CONFLICT: 1}
    assert "Patient/h-77" not in second.conflicts[0]  # named by its identity and location
    assert "hospital.ndjson:1" in second.conflicts[0] and "1951-10-24" in second.conflicts[0]
    [person] = rows(store, "person")
    assert person["year_of_birth"] == 1950  # the person keeps what was loaded first
    assert {r["person_id"] for r in rows(store, "condition_occurrence")} == {person["person_id"]}
    assert_accounted(store, second)


def test_cli_takes_the_identifier_system_from_the_option_or_site_yaml(tmp_path):
    gp = write_ndjson(tmp_path / "gp.ndjson", [patient("gp-1", "9434765919")])
    hospital = write_ndjson(tmp_path / "h.ndjson", [patient("h-1", "9434765919", gender="male")])
    store = str(tmp_path / "s.duckdb")
    runner = CliRunner(env={"COLUMNS": "400"})  # a long temporary path is not cut short
    base = ["site", "ingest", "fhir", "--store", store]
    result = runner.invoke(app, [*base, str(gp), "--person-identifier", NHS])
    assert result.exit_code == 0, result.output
    site_yaml = tmp_path / "site.yaml"
    site_yaml.write_text(f"name: s\nstore: {store}\nledger: l.db\nperson_identifier: {NHS}\n")
    result = runner.invoke(app, [*base, str(hospital), "--site-config", str(site_yaml)])
    assert result.exit_code == 1  # nothing new loaded: the one record names a known person
    assert DEMOGRAPHICS_CONFLICT in result.output
    assert "h.ndjson:1" in result.output
    result = runner.invoke(app, [*base, str(hospital), "--site-config", "none.yaml"])
    assert result.exit_code == 2 and "none.yaml is not a file" in result.output
    result = runner.invoke(app, [*base, str(hospital), "--json"])
    assert json.loads(result.output)["rows"] == {"person": 1}  # no identity: a second person


def _actors() -> list[dict]:
    """Written for this test: the Practitioner, Organization and Location that the Synthea
    sample refers to by identifier (Synthea ships them in separate bundles)."""
    return [
        {
            "resourceType": "Practitioner",
            "id": "pr1",
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999962229"}],
            "name": [{"family": "Nienow652", "given": ["Alphonso102"], "prefix": ["Dr."]}],
            "gender": "male",
        },
        {
            "resourceType": "Organization",
            "id": "org1",
            "identifier": [{"system": SYNTHEA, "value": "dd406540-fa97-3a90-858e-0a0ea61cf07b"}],
            "name": "PCP74147",
            "type": [{"coding": [{"code": "prov"}]}],
        },
        {
            "resourceType": "Location",
            "id": "loc1",
            "identifier": [{"system": SYNTHEA, "value": "cb6521ac-69d9-3b02-b34a-15e5d2ed50ea"}],
            "name": "PCP74147",
            "address": {
                "line": ["1493 Main St"],
                "city": "Randolph",
                "state": "Massachusetts",
                "postalCode": "02368",
            },
            "position": {"latitude": 42.16, "longitude": -71.07},
        },
    ]


def test_practitioners_organizations_locations_fill_provider_care_site_location(store, tmp_path):
    bundle = json.loads(SAMPLE.read_text())
    bundle["entry"] += [{"resource": r} for r in _actors()]
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    report = ingest_path(store, "fhir", path, person_identifier=MRN)
    assert report.quarantined == 0, report.rules
    [provider] = rows(store, "provider")
    assert (provider["provider_name"], provider["npi"]) == (
        "Dr. Alphonso102 Nienow652",
        "9999962229",
    )
    [site] = rows(store, "care_site")
    assert site["care_site_name"] == "PCP74147"
    [location] = rows(store, "location")
    assert (location["city"], location["zip"], location["state"]) == ("Randolph", "02368", None)
    assert report.warnings == {"fhir.state.too_long": 1}  # "Massachusetts" is no 2-letter code
    visits = rows(store, "visit_occurrence")
    assert {(v["provider_id"], v["care_site_id"]) for v in visits} == {
        (provider["provider_id"], site["care_site_id"])
    }
    [note] = rows(store, "note")
    assert note["provider_id"] == provider["provider_id"]
    [person] = rows(store, "person")
    assert person["person_source_value"] == "d5582579-7193-4866-5560-a01e723b6552"
    assert_accounted(store, report)
