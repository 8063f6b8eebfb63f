"""Write synthetic patients as an HL7 v2 feed: an ADT^A04 (with DG1s) each, an ORU^R01 of the
baseline results and an ORU^R01 of the review that ends follow-up.

PID-3 carries the site's MRN first and the NHS number second (`MRN^^^SITE^MR~NHS^^^NHS^NH`),
as UK feeds send them, so that a site whose person identifier is the NHS number finds the
same person here, in the FHIR export and in the CSV extract of the same patients.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from flip.synth.shapes import nhs_number
from flip.synth.world import CONDITIONS, MEASUREMENTS, Patient

#: HL7 v2 CX.4 and CX.5 of the NHS number in PID-3.
NHS_AUTHORITY, NHS_TYPE = "NHS", "NH"


def _stamp(when) -> str:
    return when.strftime("%Y%m%d")


def _messages(site: str, p: Patient) -> list[str]:
    """The ADT^A04 and the two ORU^R01 (baseline, review) of one patient, segments joined by
    CR."""
    serial = int(p.source_id[3:])
    pid = (
        f"PID|1||{p.source_id}^^^{site.upper()}^MR~{nhs_number(site, serial)}"
        f"^^^{NHS_AUTHORITY}^{NHS_TYPE}||Patient^{p.source_id}||{_stamp(p.birth_date)}"
        f"|{p.sex[0].upper()}"
    )
    sent = _stamp(p.index_date)
    adt = [f"MSH|^~\\&|PAS|{site}|FLIP|SITE|{sent}||ADT^A04|ADT{p.source_id}|P|2.5", pid]
    adt.append(f"PV1|1|O|||||||||||||||||V{p.source_id}|||||||||||||||||||||||||{sent}")
    for number, (name, when) in enumerate(p.conditions.items(), start=1):
        icd10 = CONDITIONS[name][1]
        adt.append(f"DG1|{number}||{icd10}^{name}^I10||{_stamp(when)}")
    baseline = (f"ORU{p.source_id}", f"LAB{p.source_id}", "24331-1^Panel^LN")
    review = (f"REV{p.source_id}", f"REV{p.source_id}", "8867-4^Heart rate^LN")
    oru = _results(site, pid, baseline, p.index_date, p.measurements)
    after = _results(site, pid, review, p.follow_up_end, p.review)
    return ["\r".join(segments) for segments in (adt, oru, after)]


def _results(
    site: str, pid: str, order: tuple[str, str, str], when: date, values: dict[str, float]
) -> list[str]:
    """The segments of an ORU^R01 of one order (message control id, order number, code) whose
    results were all taken on `when`."""
    control, number, code = order
    sent = _stamp(when)
    oru = [f"MSH|^~\\&|LAB|{site}|FLIP|SITE|{sent}||ORU^R01|{control}|P|2.5", pid]
    oru.append(f"OBR|1||{number}|{code}|||{sent}")
    for index, (name, value) in enumerate(values.items(), start=1):
        loinc, unit = MEASUREMENTS[name]
        oru.append(f"OBX|{index}|NM|{loinc}^{name}^LN||{value}|{unit}|||||F|||{sent}")
    return oru


def write_hl7v2_feed(site: str, patients: list[Patient], path: Path) -> Path:
    """Write every patient's messages to one file, a message per line block; return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    messages = [m for p in patients for m in _messages(site, p)]
    path.write_bytes(("\r\n".join(messages) + "\r\n").encode())
    return path
