"""A dermatology site's HL7 v2 feed: per patient an ADT^A04 with DG1s, an ORU^R01 per visit
(scores and labs in OBX) and an MDM^T02 per clinic letter (one FT OBX, lines
broken by `\\.br\\`, so the letter arrives with its blank lines)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from flip.synth.dermatology.codes import DIAGNOSES, LABS, PSORIATIC_ARTHRITIS, SCORES
from flip.synth.dermatology.cohort import Person
from flip.synth.dermatology.letters import Letter

#: The feed's own coding system name for scores (HL7 99zzz: a local table).
LOCAL_SCORES = "99DERM"


def _stamp(day: date) -> str:
    return day.strftime("%Y%m%d")


def _escape(text: str) -> str:
    """HL7 v2 escapes of the delimiters in free text."""
    out = text.replace("\\", "\\E\\")
    for char, code in (("|", "\\F\\"), ("^", "\\S\\"), ("~", "\\R\\"), ("&", "\\T\\")):
        out = out.replace(char, code)
    return out


def messages(site: str, p: Person, letters: list[tuple[int, Letter]]) -> list[str]:
    """The messages of one patient, segments joined by CR."""
    pid = (
        f"PID|1||{p.mrn}^^^{site.upper()}^MR~{p.nhs}^^^NHS^NH||{p.family}^{p.given}||"
        f"{_stamp(p.birth_date)}|{p.sex[0].upper()}|||{p.street}^^{p.town}^^{p.postcode}||"
        f"{p.phone.replace(' ', '')}"
    )
    first = _stamp(p.visits[0].day)
    adt = [f"MSH|^~\\&|PAS|{site}|FLIP|SITE|{first}||ADT^A04|ADT{p.mrn}|P|2.5", pid]
    adt.append(f"PV1|1|O|||||||||||||||||V{p.mrn}-0|||||||||||||||||||||||||{first}")
    diagnoses = [(DIAGNOSES[p.diagnosis])]
    if p.psa:
        diagnoses.append(PSORIATIC_ARTHRITIS)
    for number, (code, display) in enumerate(diagnoses, start=1):
        adt.append(f"DG1|{number}||{code}^{display}^SCT||{_stamp(p.diagnosed)}")
    out = ["\r".join(adt)]
    for number, visit in enumerate(p.visits):
        sent = _stamp(visit.day)
        oru = [f"MSH|^~\\&|DERM|{site}|FLIP|SITE|{sent}||ORU^R01|ORU{p.mrn}-{number}|P|2.5", pid]
        oru.append(f"PV1|1|O|||||||||||||||||V{p.mrn}-{number}|||||||||||||||||||||||||{sent}")
        oru.append(f"OBR|1||OBS{p.mrn}-{number}|DERMREV^Dermatology review^{LOCAL_SCORES}|||{sent}")
        results = [
            (SCORES[k][0], SCORES[k][2], LOCAL_SCORES, v, "") for k, v in visit.scores.items()
        ]
        if number == 0:
            results.append(
                ("FITZPATRICK", "Fitzpatrick skin type", LOCAL_SCORES, p.fitzpatrick, "")
            )
        results += [
            (LABS[name][0], LABS[name][2], "LN", value, LABS[name][1])
            for day, name, value in p.labs
            if day == visit.day
        ]
        for i, (code, display, system, value, unit) in enumerate(results, start=1):
            oru.append(f"OBX|{i}|NM|{code}^{display}^{system}||{value:g}|{unit}|||||F|||{sent}")
        out.append("\r".join(oru))
    for visit_number, letter in letters:
        sent = _stamp(p.visits[visit_number].day)
        mdm = [f"MSH|^~\\&|DOCS|{site}|FLIP|SITE|{sent}||MDM^T02|MDM{p.mrn}-{visit_number}|P|2.5"]
        mdm += [pid, f"PV1|1|O|||||||||||||||||V{p.mrn}-{visit_number}"]
        mdm.append(f"TXA|1|CN^Consultation note|TX|{sent}||||||||DOC{p.mrn}-{visit_number}||||||AU")
        body = "\\.br\\".join(_escape(line) for line in letter.text.split("\n"))
        mdm.append(f"OBX|1|FT|{CLINIC_LINE}||{body}||||||F")
        out.append("\r".join(mdm))
    return out


CLINIC_LINE = "11488-4^Consult note^LN"


def write_feed(
    site: str, people: list[Person], letters: dict[int, list[tuple[int, Letter]]], path: Path
) -> None:
    """Write every patient's messages to one file, one message after another."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = [m for p in people for m in messages(site, p, letters.get(p.serial, []))]
    path.write_bytes(("\r\n".join(text) + "\r\n").encode())
