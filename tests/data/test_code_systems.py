"""Code systems by HL7 v2 name, FHIR URI or OID, and the ones a site declares in site.yaml."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flip.data.ingest import ingest_path
from flip.data.terminology import Vocabulary, load_athena
from flip.data.terminology.vocabulary import hl7_system, system_vocabulary
from tests.data.stored import rows, write_ndjson


@pytest.mark.parametrize(
    ("system", "vocabulary_id"),
    [
        ("LN", "LOINC"),
        ("http://loinc.org", "LOINC"),
        ("urn:oid:2.16.840.1.113883.6.1", "LOINC"),
        ("2.16.840.1.113883.6.96", "SNOMED"),
        ("SCT", "SNOMED"),
        ("I9C", "ICD9CM"),
        ("http://hl7.org/fhir/sid/icd-9-cm", "ICD9CM"),
        ("urn:oid:2.16.840.1.113883.6.103", "ICD9CM"),
        ("I10", "ICD10"),
        ("urn:oid:2.16.840.1.113883.6.90", "ICD10CM"),
        ("CVX", "CVX"),
        ("http://hl7.org/fhir/sid/cvx", "CVX"),
        ("urn:oid:2.16.840.1.113883.12.292", "CVX"),
        ("NDC", "NDC"),
        ("http://hl7.org/fhir/sid/ndc", "NDC"),
        ("urn:oid:2.16.840.1.113883.6.69", "NDC"),
        ("C4", "CPT4"),
        ("http://www.ama-assn.org/go/cpt", "CPT4"),
        ("urn:oid:2.16.840.1.113883.6.12", "CPT4"),
        ("RXNORM", "RxNorm"),
        ("urn:oid:2.16.840.1.113883.6.88", "RxNorm"),
        ("https://fhir.nhs.uk/Id/opcs-4", "OPCS4"),
        ("https://fhir.hl7.org.uk/Id/opcs-4", "OPCS4"),
        ("OPCS4", "OPCS4"),
        ("https://dmd.nhs.uk", "dm+d"),
        ("https://dmd.nhs.uk/", "dm+d"),
        ("http://read.info/readv2", "Read"),
        ("urn:oid:2.16.840.1.113883.6.29", "Read"),
        ("2.16.840.1.113883.2.1.6.2", "Read"),
        ("urn:oid:2.16.840.1.113883.2.1.3.2.4.15", "SNOMED"),
        ("urn:hl7v2:I9C", "ICD9CM"),
        ("HTTP://LOINC.ORG/", "LOINC"),
    ],
)
def test_a_code_system_is_recognised_by_hl7_name_uri_or_oid(system, vocabulary_id):
    assert system_vocabulary(system) == vocabulary_id


def _nhs_vocabulary() -> Vocabulary:
    """Concepts as an Athena download holds them (ids made up here): an OPCS-4 procedure
    and a dm+d product, both non-standard, each "Maps to" its standard concept."""
    by_code = {
        ("OPCS4", "W40.1"): (91, "Procedure", False),
        ("SNOMED", "609588000"): (92, "Procedure", True),
        ("dm+d", "36126411000001107"): (93, "Drug", False),
        ("RxNorm Extension", "OMOP1"): (94, "Drug", True),
    }
    domains = {concept_id: domain for concept_id, domain, _ in by_code.values()}
    return Vocabulary(by_code=by_code, maps_to={91: 92, 93: 94}, domains=domains)


@pytest.mark.parametrize(
    "system",
    ["https://fhir.nhs.uk/Id/opcs-4", "https://fhir.hl7.org.uk/Id/opcs-4", hl7_system("OPCS4")],
)
def test_an_opcs4_procedure_maps_by_its_nhs_uri_or_hl7_name(system):
    found = _nhs_vocabulary().map(system, "W40.1")
    assert (found.concept_id, found.domain_id, found.source_concept_id) == (92, "Procedure", 91)


@pytest.mark.parametrize(
    "system",
    ["https://dmd.nhs.uk", "http://snomed.info/sct", "urn:oid:2.16.840.1.113883.2.1.3.2.4.15"],
)
def test_a_dm_d_product_maps_under_its_own_uri_or_as_a_snomed_uk_drug_extension_id(system):
    """dm+d ids are SNOMED CT UK Drug Extension ids, which UK feeds send under SNOMED's URI
    (UK Core's medication codes); a SNOMED code not in SNOMED is looked up in dm+d."""
    found = _nhs_vocabulary().map(system, "36126411000001107")
    assert (found.concept_id, found.domain_id, found.source_concept_id) == (94, "Drug", 93)
    assert _nhs_vocabulary().map("http://snomed.info/sct", "123").reason == (
        "SNOMED code 123 is not in the vocabulary"
    )


def test_an_hl7_name_reads_as_its_uri_and_an_unknown_one_keeps_its_name():
    assert hl7_system("CVX") == "http://hl7.org/fhir/sid/cvx"
    assert hl7_system("99LAB") == "urn:hl7v2:99LAB"
    assert system_vocabulary("urn:hl7v2:99LAB") is None


def test_declared_code_systems_map_where_the_vocabulary_has_the_code(store):
    vocabulary = Vocabulary.from_store(store)
    assert vocabulary.map("urn:hl7v2:99LAB", "2093-3").concept_id == 0
    declared = vocabulary.with_code_systems(
        {"99LAB": "LOINC", "https://lab.example/codes": "LOINC"}
    )
    assert declared.map("urn:hl7v2:99LAB", "2093-3").concept_id == 3027114
    assert declared.map("https://lab.example/codes", "2093-3").concept_id == 3027114
    assert declared.with_local_codes({}).map("urn:hl7v2:99LAB", "2093-3").concept_id == 3027114


def test_flip_site_ingest_uses_the_code_systems_site_yaml_declares(tmp_path):
    feed = tmp_path / "feed.hl7"
    feed.write_text(
        "\r".join(
            (
                "MSH|^~\\&|LAB|H|FLIP|S|20240101||ORU^R01|D1|P|2.5",
                "PID|1||9^^^H^MR||X^Y||19700101|F",
                "OBR|1||A1|x^y^LN|||20240102",
                "OBX|1|NM|2093-3^Cholesterol^99LAB||5.2|mmol/L|||||F",
            )
        )
    )
    site = tmp_path / "site.yaml"
    site.write_text("code_systems:\n  99LAB: LOINC\n")

    def ingest(*extra: str) -> dict:
        store = str(tmp_path / f"store{len(extra)}.duckdb")
        args = ["site", "ingest", "hl7v2", str(feed), "--store", store, "--json", *extra]
        done = subprocess.run(
            [sys.executable, "-m", "flip", *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert ingest()["unmapped"] == {"urn:hl7v2:99LAB|2093-3": 1}
    assert ingest("--site-config", str(site))["unmapped"] == {}


#: An Athena-style slice (ids made up here, codes real): the standard concept each code
#: "Maps to", as a site's Athena download holds them.
_ATHENA = [
    # concept_id, name, domain, vocabulary, class, standard, code
    (
        2000000001,
        "Atherosclerosis w/int claudctn",
        "Condition",
        "ICD9CM",
        "5-dig billing code",
        "",
        "440.21",
    ),
    (
        2000000002,
        "Atherosclerosis of artery of extremity",
        "Condition",
        "SNOMED",
        "Disorder",
        "S",
        "F1",
    ),
    (2000000003, "influenza, injectable, quadrivalent", "Drug", "CVX", "CVX", "S", "150"),
    (
        2000000004,
        "Metformin 500 MG Oral Tablet [NDC]",
        "Drug",
        "NDC",
        "11-digit NDC",
        "",
        "00093104801",
    ),
    (2000000005, "metformin 500 MG Oral Tablet", "Drug", "RxNorm", "Clinical Drug", "S", "861007"),
    (2000000006, "Colonoscopy, flexible; diagnostic", "Procedure", "CPT4", "CPT4", "S", "45378"),
    (2000000007, "Essential hypertension (Read)", "Condition", "Read", "Read", "", "G20.."),
    (2000000008, "Essential hypertension", "Condition", "SNOMED", "Disorder", "S", "F2"),
]
_MAPS_TO = [(2000000001, 2000000002), (2000000004, 2000000005), (2000000007, 2000000008)]


def _athena_slice(folder):
    folder.mkdir()
    header = "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\t"
    header += "standard_concept\tconcept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason"
    lines = [header] + ["\t".join(map(str, row)) + "\t19700101\t20991231\t" for row in _ATHENA]
    (folder / "CONCEPT.csv").write_text("\n".join(lines) + "\n")
    relationships = [
        "concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\t"
        "valid_end_date\tinvalid_reason"
    ]
    relationships += [f"{a}\t{b}\tMaps to\t19700101\t20991231\t" for a, b in _MAPS_TO]
    (folder / "CONCEPT_RELATIONSHIP.csv").write_text("\n".join(relationships) + "\n")
    return folder


def test_codes_of_each_system_map_through_the_sites_vocabulary_by_name_uri_or_oid(store, tmp_path):
    """ICD-9-CM from a real Cerner feed (HL7 name `I9`), CVX and CPT4 by FHIR URI, NDC and
    Read by OID: each lands on the standard concept the loaded vocabulary maps it to,
    in the table of that concept's domain, its source concept kept."""
    load_athena(store, _athena_slice(tmp_path / "athena"))
    cerner = Path(__file__).parent / "fixtures" / "hl7v2" / "python-hl7_adt_a01_cerner.hl7"
    report = ingest_path(store, "hl7v2", cerner)
    assert report.unmapped == {} and report.quarantined == 0, report.rules
    subject = {"reference": "Patient/p1"}
    resources = [
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-02-03"},
        {
            "resourceType": "Immunization",
            "id": "i1",
            "status": "completed",
            "patient": subject,
            "occurrenceDateTime": "2021-10-01T09:30:00Z",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "150"}]},
        },
        {
            "resourceType": "MedicationRequest",
            "id": "m1",
            "status": "active",
            "intent": "order",
            "subject": subject,
            "authoredOn": "2021-10-02",
            "medicationCodeableConcept": {
                "coding": [{"system": "urn:oid:2.16.840.1.113883.6.69", "code": "00093104801"}]
            },
        },
        {
            "resourceType": "Procedure",
            "id": "x1",
            "status": "completed",
            "subject": subject,
            "performedDateTime": "2021-10-03",
            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "45378"}]},
        },
        {
            "resourceType": "Condition",
            "id": "c1",
            "subject": subject,
            "onsetDateTime": "2021-10-04",
            "code": {"coding": [{"system": "urn:oid:2.16.840.1.113883.2.1.6.2", "code": "G20.."}]},
        },
    ]
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "r.ndjson", resources))
    assert report.unmapped == {} and report.quarantined == 0, report.rules
    conditions = {
        r["condition_source_value"]: (r["condition_concept_id"], r["condition_source_concept_id"])
        for r in rows(store, "condition_occurrence")
    }
    assert conditions == {"440.21": (2000000002, 2000000001), "G20..": (2000000008, 2000000007)}
    drugs = {
        r["drug_source_value"]: (r["drug_concept_id"], r["drug_source_concept_id"])
        for r in rows(store, "drug_exposure")
    }
    assert drugs == {"150": (2000000003, 2000000003), "00093104801": (2000000005, 2000000004)}
    (procedure,) = rows(store, "procedure_occurrence")
    assert (procedure["procedure_concept_id"], procedure["procedure_source_value"]) == (
        2000000006,
        "45378",
    )
