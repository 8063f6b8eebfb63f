"""Encounter classes as sources send them -> OMOP standard Visit concepts.

A visit's source value is its class code: HL7 v3 ActCode (FHIR R4 and R5 `Encounter.class`,
and HL7 v2 PV1-2 as the reader spells it: I, O, E -> IMP, AMB, EMER), or the DSTU2/STU3
`encounter-class` codes (`inpatient`, `home`, `virtual`…). The targets follow the HL7
FHIR-to-OMOP IG's EncounterClass ConceptMap (IMP, AMB, EMER, OBSENC, HH, VR; VR there as
722455, here as 5083 Telehealth, the Visit concept the OMOP vocabulary lists for remote
care); ACUTE and NONAC are kinds of IMP in ActCode. SS (short stay), PRENC (pre-admission)
and FLD (field) have no OMOP Visit concept that says the same: concept 0, the code kept.
"""

from __future__ import annotations

INPATIENT, OUTPATIENT, EMERGENCY = 9201, 9202, 9203
#: "Emergency Room and Inpatient Visit": an observation encounter, as the IG maps OBSENC.
ER_AND_INPATIENT = 262
HOME, TELEHEALTH = 581476, 5083

#: Class code (upper case) -> visit_concept_id.
VISIT_CLASSES = {
    "IMP": INPATIENT,
    "ACUTE": INPATIENT,
    "NONAC": INPATIENT,
    "AMB": OUTPATIENT,
    "EMER": EMERGENCY,
    "OBSENC": ER_AND_INPATIENT,
    "HH": HOME,
    "VR": TELEHEALTH,
    # DSTU2/STU3 http://hl7.org/fhir/encounter-class
    "INPATIENT": INPATIENT,
    "OUTPATIENT": OUTPATIENT,
    "AMBULATORY": OUTPATIENT,
    "EMERGENCY": EMERGENCY,
    "HOME": HOME,
    "VIRTUAL": TELEHEALTH,
}


def visit_concept(source_value: str | None) -> int:
    """The visit_concept_id of an encounter class code (any case); 0 when none is known."""
    return VISIT_CLASSES.get((source_value or "").strip().upper(), 0)
