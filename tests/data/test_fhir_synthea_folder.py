"""A Synthea output folder: patient Bundles sort by name before the hospital and
practitioner Bundles they refer to, and still link their visits to them."""

import orjson

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows

SYNTHEA = "https://github.com/synthetichealth/synthea"
NPI = "http://hl7.org/fhir/sid/us-npi"


def _bundle(kind, *resources):
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": r,
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for r in resources
        ],
    }


def test_patient_bundles_link_to_hospitals_and_practitioners_read_from_later_names(store, tmp_path):
    folder = tmp_path / "fhir"
    folder.mkdir()
    patient = {"resourceType": "Patient", "id": "p-1", "gender": "male", "birthDate": "1950"}
    encounter = {
        "resourceType": "Encounter",
        "id": "e-1",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "urn:uuid:p-1"},
        "participant": [{"individual": {"reference": f"Practitioner?identifier={NPI}|99"}}],
        "serviceProvider": {"reference": f"Organization?identifier={SYNTHEA}|org-1"},
        "period": {"start": "2019-01-01T10:00:00-05:00", "end": "2019-01-01T10:30:00-05:00"},
    }
    organization = {
        "resourceType": "Organization",
        "id": "org-1",
        "identifier": [{"system": SYNTHEA, "value": "org-1"}],
        "name": "General Hospital",
    }
    practitioner = {
        "resourceType": "Practitioner",
        "id": "pr-1",
        "identifier": [{"system": NPI, "value": "99"}],
        "name": [{"family": "Smith", "given": ["Ann"]}],
    }
    files = {
        "Aaron_Smith_p-1.json": _bundle("transaction", patient, encounter),
        "hospitalInformation1.json": _bundle("batch", organization),
        "practitionerInformation1.json": _bundle("batch", practitioner),
    }
    for name, bundle in files.items():
        (folder / name).write_bytes(orjson.dumps(bundle))
    report = ingest_path(store, "fhir", folder)
    (visit,) = rows(store, "visit_occurrence")
    (provider,) = rows(store, "provider")
    (care_site,) = rows(store, "care_site")
    assert visit["provider_id"] == provider["provider_id"]
    assert visit["care_site_id"] == care_site["care_site_id"]
    assert_accounted(store, report)
