"""One person whatever the source kind: the site's person identifier in FHIR, HL7 v2 and tables."""

import re
from pathlib import Path

import yaml
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.cdm.rows import person_id
from flip.data.ingest import DEMOGRAPHICS_CONFLICT, SAME_PERSON, ingest_path
from flip.data.sources.hl7v2 import parse_message
from flip.data.sources.identity import PersonIdentity
from flip.data.sources.records import IDENTIFIED, SourcePerson
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

SAMPLES = Path(__file__).parent / "fixtures" / "hl7v2"
#: The Cerner ADT^A01 sends PID-3 `2148790^^^MSH_MRN^MR~162840^^^MSH_EMPI^CM`: the site's
#: enterprise id (EMPI) is the second repetition.
CERNER = SAMPLES / "python-hl7_adt_a01_cerner.hl7"
EMPI = "urn:example:msh:empi"
IDENTITY = PersonIdentity(EMPI, authority="MSH_EMPI")
#: hl7apy's OML^O33 PID-3: `1010110909194822^^^GATEWAY_IL&1.3.6.1.4.1.21367.2011.2.5.17&ISO^PK`.
OML_PID = (
    "PID|||1010110909194822^^^GATEWAY_IL&1.3.6.1.4.1.21367.2011.2.5.17&ISO^PK||PIPPO^PLUTO^^^^^L"
    "||19790515|M"
)


def _fhir(tmp_path: Path, gender: str = "female") -> Path:
    """The Cerner patient as a FHIR export knows them: another MRN first, the EMPI second."""
    resources = [
        {
            "resourceType": "Patient",
            "id": "ehr-1",
            "identifier": [
                {"system": "urn:example:ehr:mrn", "value": "E-55"},
                {"system": EMPI.upper() + "/", "value": "162840"},  # spelt differently
            ],
            "gender": gender,
            "birthDate": "1952-11-29",
        },
        {
            "resourceType": "Condition",
            "id": "c1",
            "subject": {"reference": "Patient/ehr-1"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
            "onsetDateTime": "2015-03-02",
        },
    ]
    return write_ndjson(tmp_path / "ehr.ndjson", resources)


def _extract(folder: Path) -> Path:
    """A CSV extract: the same patient (a conflicting sex), and one without an EMPI."""
    folder.mkdir()
    (folder / "patients.csv").write_text(
        "patient_ref,empi,dob,sex\nP1,162840,1952-11-29,M\nP2,,1960-01-01,F\n"
    )
    (folder / "diagnoses.csv").write_text(
        "diag_id,patient_ref,icd10,diag_date\nD1,P1,I10,2016-05-01\nD2,P2,E11,2016-05-02\n"
    )
    mapping = {
        "source": "warehouse",
        "person": {
            "file": "patients.csv",
            "id": "patient_ref",
            "identifier": "empi",
            "birth_date": {"column": "dob"},
            "gender": {"column": "sex", "values": {"M": "male", "F": "female"}},
        },
        "events": [
            {
                "file": "diagnoses.csv",
                "id": "diag_id",
                "person": "patient_ref",
                "code": {"column": "icd10", "system": "http://hl7.org/fhir/sid/icd-10"},
                "date": {"column": "diag_date"},
                "default_table": "condition_occurrence",
            }
        ],
    }
    (folder / "mapping.yaml").write_text(yaml.safe_dump(mapping))
    return folder


def test_one_person_across_hl7v2_fhir_and_a_csv_extract(store, tmp_path):
    runs = [
        ("hl7v2", CERNER, "hl7v2"),
        ("fhir", _fhir(tmp_path), "fhir:ehr.ndjson"),
        ("csv", _extract(tmp_path / "extract"), "csv:warehouse"),
    ]
    reports = [ingest_path(store, kind, path, person_identifier=IDENTITY) for kind, path, _ in runs]
    for report in reports:
        assert_accounted(store, report)
    hl7, fhir, csv = reports
    assert hl7.rows["person"] == 1 and hl7.skipped_rules.get(SAME_PERSON) is None
    assert fhir.skipped_rules == {SAME_PERSON: 1} and fhir.warnings == {}
    assert csv.skipped_rules == {SAME_PERSON: 1} and csv.rows["person"] == 1  # P2: a new person
    assert csv.warnings == {DEMOGRAPHICS_CONFLICT: 1}
    assert "patients.csv" in csv.conflicts[0] and "male" in csv.conflicts[0]
    the_one = person_id("any", f"{IDENTIFIED}{EMPI}|162840")
    persons = {p["person_id"]: p for p in rows(store, "person")}
    assert len(persons) == 2
    assert persons[the_one]["person_source_value"] == "162840"
    assert persons[the_one]["gender_concept_id"] == 8532  # kept as first loaded, not overwritten
    conditions = rows(store, "condition_occurrence")
    assert len(conditions) == 4
    assert sorted(c["person_id"] == the_one for c in conditions) == [False, True, True, True]
    with store.connect() as conn:
        provenance = conn.execute(
            select(schema.source_record.c.source_system, schema.source_record.c.cdm_table)
            .join(
                schema.condition_occurrence,
                schema.condition_occurrence.c.condition_occurrence_id
                == schema.source_record.c.cdm_id,
            )
            .where(schema.condition_occurrence.c.person_id == the_one)
        ).all()
    assert sorted(s for s, _ in provenance) == sorted(name for *_, name in runs)
    for (kind, path, _), first in zip(runs, reports, strict=True):
        again = ingest_path(store, kind, path, person_identifier=IDENTITY)
        assert again.loaded == 0 and again.unchanged == first.loaded, again.as_dict()
        assert_accounted(store, again)
    assert len(rows(store, "person")) == 2


def test_without_the_identifier_each_kind_keeps_its_own_person(store, tmp_path):
    for kind, path in (("hl7v2", CERNER), ("fhir", _fhir(tmp_path))):
        assert_accounted(store, ingest_path(store, kind, path))
    assert len(rows(store, "person")) == 2


def test_pid3_repetition_chosen_by_authority_oid_or_type(tmp_path):
    msh = "MSH|^~\\&|LAB|NORTH|FLIP|SITE|20240101||ADT^A04|C1|P|2.5"

    def key(identity, pid=OML_PID):
        [person] = [
            r
            for r in parse_message(f"{msh}\r{pid}".encode(), "m", identity)
            if isinstance(r, SourcePerson)
        ]
        return person.key, person.source_value

    value = "1010110909194822"
    oid = "urn:oid:1.3.6.1.4.1.21367.2011.2.5.17"
    assert key(PersonIdentity(oid)) == (f"{IDENTIFIED}{oid}|{value}", value)
    assert key(PersonIdentity("urn:gw", type_code="pk"))[0] == f"{IDENTIFIED}urn:gw|{value}"
    assert key(PersonIdentity("urn:gw", authority="GATEWAY_IL", type_code="PK"))[0].startswith(
        IDENTIFIED
    )
    local = f"patient/GATEWAY_IL&{oid[8:]}&ISO/{value}"  # as without an identity
    assert key(PersonIdentity("urn:gw", authority="GATEWAY_IL", type_code="MR"))[0] == local
    assert key(None)[0] == local
    second = OML_PID.replace("|||", "|||X1^^^OTHER^MR~", 1)
    assert key(PersonIdentity(oid), second) == (f"{IDENTIFIED}{oid}|{value}", value)
    assert key(PersonIdentity("urn:gw", type_code="MR"), second)[1] == "X1"


def test_a_blank_identifier_is_no_one_not_one_person_for_all(store, tmp_path):
    """A blank value of the site's identifier (FHIR `" "`, HL7 PID-3 `" "`) keyed every such
    patient as one person: FHIR patients merged, and in HL7 one patient replaced another."""
    blank = [
        {
            "resourceType": "Patient",
            "id": f"p{n}",
            "identifier": [{"system": EMPI, "value": value}],
            "gender": "female",
            "birthDate": f"195{n}-10-24",
        }
        for n, value in ((1, " "), (2, "  "), (3, "\t"))
    ]
    fhir = ingest_path(
        store, "fhir", write_ndjson(tmp_path / "a.ndjson", blank), person_identifier=EMPI
    )
    assert_accounted(store, fhir)
    assert (fhir.loaded, fhir.skipped) == (3, 0)
    a01 = (
        "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200101083000||ADT^A01|C{n}|P|2.5\r"
        "PID|1||{blank}^^^MSH_EMPI^CM~L{n}^^^HOSP^MR||Doe^Jane||1950030{n}|F\r"
    )
    feed = tmp_path / "feed.hl7"
    feed.write_text("\n".join(a01.format(n=n, blank=" " * n) for n in (1, 2)))
    hl7 = ingest_path(store, "hl7v2", feed, person_identifier=IDENTITY)
    assert_accounted(store, hl7)
    assert (hl7.loaded, hl7.skipped) == (2, 0)
    assert len(rows(store, "person")) == 5


def _person_provenance(store, pid: int) -> list[tuple[str, str, str]]:
    s = schema.source_record
    with store.connect() as conn:
        found = conn.execute(
            select(s.c.source_system, s.c.role, s.c.location).where(
                s.c.cdm_table == "person", s.c.cdm_id == pid
            )
        ).all()
    return sorted(
        (system, role, Path(re.split("[:@#]", location)[0]).name)
        for system, role, location in found
    )


def test_every_source_record_of_one_person_is_traced_to_it(store, tmp_path):
    runs = [
        ("hl7v2", CERNER),
        ("fhir", _fhir(tmp_path)),
        ("csv", _extract(tmp_path / "extract")),
    ]
    reports = [ingest_path(store, kind, path, person_identifier=IDENTITY) for kind, path in runs]
    for report in reports:
        assert_accounted(store, report)
    the_one = person_id("any", f"{IDENTIFIED}{EMPI}|162840")
    traced = [
        ("csv:warehouse", "confirms", "patients.csv"),
        ("fhir:ehr.ndjson", "confirms", "ehr.ndjson"),
        ("hl7v2", "produced", "python-hl7_adt_a01_cerner.hl7"),
    ]
    assert _person_provenance(store, the_one) == traced
    for kind, path in runs:  # re-runs trace the same records, once each
        again = ingest_path(store, kind, path, person_identifier=IDENTITY)
        assert_accounted(store, again)
        assert again.loaded == 0
    assert _person_provenance(store, the_one) == traced
    assert len(rows(store, "person")) == 2

    changed = CERNER.read_bytes().replace(b"ADT^A01", b"ADT^A08")  # the first source re-sends
    (tmp_path / "update.hl7").write_bytes(changed)
    update = ingest_path(store, "hl7v2", tmp_path / "update.hl7", person_identifier=IDENTITY)
    assert_accounted(store, update)
    systems = [system for system, *_ in _person_provenance(store, the_one)]
    assert systems == ["csv:warehouse", "fhir:ehr.ndjson", "hl7v2"], "others keep theirs"

    (tmp_path / "extract" / "patients.csv").write_text(  # P1 gone from the full re-export
        "patient_ref,empi,dob,sex\nP2,,1960-01-01,F\n"
    )
    (tmp_path / "extract" / "diagnoses.csv").write_text(
        "diag_id,patient_ref,icd10,diag_date\nD2,P2,E11,2016-05-02\n"
    )
    pruned = ingest_path(store, "csv", tmp_path / "extract", person_identifier=IDENTITY, prune=True)
    assert [s for s, *_ in _person_provenance(store, the_one)] == ["fhir:ehr.ndjson", "hl7v2"]
    assert_accounted(store, pruned)
    assert pruned.pruned == 1 and pruned.pruned_rows == {"condition_occurrence": 1}


def test_the_records_confirming_a_person_follow_it_into_a_merge(store, tmp_path):
    """The Cerner patient, confirmed by a FHIR export, is merged (A40) into another
    person: the export's record then traces to the surviving person, not to none."""
    for kind, path in (("hl7v2", CERNER), ("fhir", _fhir(tmp_path))):
        assert_accounted(store, ingest_path(store, kind, path, person_identifier=IDENTITY))
    merged = person_id("any", f"{IDENTIFIED}{EMPI}|162840")
    survivor = person_id("any", f"{IDENTIFIED}{EMPI}|555")
    assert ("fhir:ehr.ndjson", "confirms", "ehr.ndjson") in _person_provenance(store, merged)
    feed = tmp_path / "merge.hl7"
    feed.write_text(
        "\r".join(
            (
                "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200101090000||ADT^A04|M1|P|2.5",
                "PID|1||555^^^MSH_EMPI^CM||Roe^R||19521129|F",
                "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200103090000||ADT^A40|M2|P|2.5",
                "PID|1||555^^^MSH_EMPI^CM||Roe^R||19521129|F",
                "MRG|162840^^^MSH_EMPI^CM",
            )
        )
    )
    merge = ingest_path(store, "hl7v2", feed, person_identifier=IDENTITY)
    assert_accounted(store, merge)
    assert merged not in {p["person_id"] for p in rows(store, "person")}
    confirming = [(s, r) for s, r, _ in _person_provenance(store, survivor) if r == "confirms"]
    assert confirming == [("fhir:ehr.ndjson", "confirms")]
    # the merged-away record is a retired identifier of the survivor
    assert _person_provenance(store, merged) == []
    assert ("hl7v2", "merged") in [(s, r) for s, r, _ in _person_provenance(store, survivor)]


def test_a_patient_another_source_sends_under_a_merged_away_identifier_files_under_the_survivor(
    store, tmp_path
):
    """After an A40 retires the EMPI 162840, the FHIR export that carries it, read again
    with a new condition, brings no one back: its facts file under the survivor."""
    ingest_path(store, "hl7v2", CERNER, person_identifier=IDENTITY)
    feed = tmp_path / "merge.hl7"
    feed.write_text(
        "\r".join(
            (
                "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200101090000||ADT^A04|M1|P|2.5",
                "PID|1||555^^^MSH_EMPI^CM||Roe^R||19521129|F",
                "MSH|^~\\&|PAS|HOSP|FLIP|SITE|20200103090000||ADT^A40|M2|P|2.5",
                "PID|1||555^^^MSH_EMPI^CM||Roe^R||19521129|F",
                "MRG|162840^^^MSH_EMPI^CM",
            )
        )
    )
    assert_accounted(store, ingest_path(store, "hl7v2", feed, person_identifier=IDENTITY))
    survivor = person_id("any", f"{IDENTIFIED}{EMPI}|555")
    later = ingest_path(store, "fhir", _fhir(tmp_path), person_identifier=IDENTITY)
    assert_accounted(store, later)
    assert later.skipped_rules["person.merged_away"] == 1 and later.quarantined == 0
    assert {p["person_id"] for p in rows(store, "person")} == {survivor}
    assert {c["person_id"] for c in rows(store, "condition_occurrence")} == {survivor}
