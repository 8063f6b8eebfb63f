"""ADT history segments beside DG1: PR1 procedures and AL1 allergies are read, not dropped."""

from datetime import datetime

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows


def test_procedures_and_allergies_of_an_admission_are_stored(store, tmp_path):
    """An A01 carrying PR1 and AL1 segments: the procedure lands in procedure_occurrence at
    its PR1-5 time, in the visit; the allergies (one coded in RxNorm, a Drug concept) are
    observations of the allergen, never exposures; a PR1 without a code is quarantined
    alone."""
    message = "\r".join(
        [
            "MSH|^~\\&|ADT|HOSP|EHR|HOSP|20230102100000||ADT^A01^ADT_A01|A1|P|2.5.1",
            "EVN|A01|20230102100000",
            "PID|1||555^^^HOSP^MR||Doe^John||19700301|M",
            "PV1|1|I|W1^R1^B1||||||||||||||||V100^^^HOSP^VN|||||||||||||||||||||||||20230102093000",
            "AL1|1|DA|6809^Metformin^RXNORM|SV|Rash|20200101",
            "AL1|2|FA|^Peanut||Anaphylaxis",
            "PR1|1|C4|80146002^Appendectomy^SCT||20230102120000",
            "PR1|2|C4|||20230102130000",
        ]
    )
    (tmp_path / "a.hl7").write_text(message + "\r")
    report = ingest_path(store, "hl7v2", tmp_path / "a.hl7")
    assert report.rules == {"hl7.pr1.code_missing": 1}, report.as_dict()
    (visit,) = rows(store, "visit_occurrence")
    (procedure,) = rows(store, "procedure_occurrence")
    assert procedure["procedure_source_value"] == "80146002"
    assert procedure["procedure_datetime"] == datetime(2023, 1, 2, 12, 0)
    assert procedure["visit_occurrence_id"] == visit["visit_occurrence_id"]
    assert rows(store, "drug_exposure") == []
    allergies = {
        r["observation_source_value"]: (r["observation_concept_id"], r["observation_date"])
        for r in rows(store, "observation")
    }
    assert allergies == {
        "6809": (1503297, datetime(2020, 1, 1).date()),  # metformin
        "Peanut": (0, datetime(2023, 1, 2).date()),  # no time: the message's
    }
    assert_accounted(store, report)
