"""FHIR statuses that say a resource is not a fact (and report panels, which only group
facts read on their own): such a resource is skipped by a named rule.

Checked on the parsed JSON before validation, so a skipped resource costs no model.
What each status means follows the R4 value sets (event-status, observation-status,
request-status, condition-ver-status, allergyintolerance-verification); the STU3 and
DSTU2 shapes of the same meaning (a plain-code verificationStatus, `notDone`,
`notGiven`) are read by the same rules.
"""

from __future__ import annotations

from typing import Any

from flip.data.sources.fhir_attachment import textual

#: Any resource marked entered-in-error, in `status` or `verificationStatus`.
ENTERED_IN_ERROR = "fhir.status.entered_in_error"

#: A Condition or AllergyIntolerance whose verificationStatus is refuted.
REFUTED = "fhir.verification.refuted"

#: A Bundle entry (transaction, history, bulk `deleted`) that deletes a resource.
DELETED = "fhir.deleted"

#: A Medication: its code is read into the resources that name it, not stored alone.
READ_THROUGH = "fhir.medication.read_through"

#: A DiagnosticReport that groups results: each result is read as its own Observation (one
#: whose presentedForm carries text is a note too, see fhir._Converter.diagnostic_report).
PANEL = "fhir.report.panel"

#: An Observation (or component) with no value, only a dataAbsentReason saying why.
ABSENT = "fhir.value.absent"

#: An Observation that only groups others (`hasMember`), each read on its own.
MEMBERS = "fhir.observation.panel"

#: Per resource type, the `status` values that mean "this did not happen", and their rule.
#: A planned Encounter, a draft order, a Procedure in preparation and a medication only
#: intended have not happened (yet): a later version that has is read then.
NOT_FACTS: dict[str, dict[str, str]] = {
    "Encounter": {"cancelled": "fhir.status.cancelled", "planned": "fhir.status.planned"},
    "Observation": {"cancelled": "fhir.status.cancelled"},
    "DiagnosticReport": {"cancelled": "fhir.status.cancelled"},
    "Procedure": {
        "not-done": "fhir.status.not_done",
        "preparation": "fhir.status.preparation",
    },
    "MedicationRequest": {"cancelled": "fhir.status.cancelled", "draft": "fhir.status.draft"},
    "MedicationAdministration": {"not-done": "fhir.status.not_done"},
    "MedicationStatement": {
        "not-taken": "fhir.status.not_taken",
        "intended": "fhir.status.intended",
    },
    "Immunization": {"not-done": "fhir.status.not_done"},
    "ImagingStudy": {"cancelled": "fhir.status.cancelled"},
}

#: The rules of statuses that withdraw a resource an earlier version of which was a fact
#: (every rule here but PANEL, which says nothing of the resource's truth).
WITHDRAWING = frozenset(
    {
        ENTERED_IN_ERROR,
        REFUTED,
        ABSENT,
        *(rule for rules in NOT_FACTS.values() for rule in rules.values()),
    }
)

#: Resource types whose verificationStatus can refute them.
VERIFIED = ("Condition", "AllergyIntolerance")


#: STU3/DSTU2 flags that say the act did not happen (R4 moved them into `status`).
NOT_DONE_FLAGS: dict[str, tuple[str, str]] = {
    "Procedure": ("notDone", "fhir.status.not_done"),
    "Immunization": ("notGiven", "fhir.status.not_done"),
    "MedicationAdministration": ("notGiven", "fhir.status.not_done"),
}


def _codes(concept: Any) -> list[str]:
    """The codes of a CodeableConcept as parsed JSON; a plain code (STU3 and DSTU2 spell
    a Condition's verificationStatus so) is its own code; anything else has none."""
    if isinstance(concept, str):
        return [concept]
    if not isinstance(concept, dict):
        return []
    return [c.get("code") for c in concept.get("coding") or [] if isinstance(c, dict)]


def _valued(element: dict) -> bool:
    """Whether an Observation or component as parsed JSON carries a value[x]."""
    return any(name.startswith("value") and element[name] is not None for name in element)


def _presents_text(report: dict) -> bool:
    """Whether a DiagnosticReport as parsed JSON carries text inline in its presentedForm:
    it is then a note, whatever results it also groups."""
    forms = report.get("presentedForm")
    return isinstance(forms, list) and any(
        isinstance(f, dict) and f.get("data") and textual(f.get("contentType")) for f in forms
    )


def not_a_fact(resource: dict) -> tuple[str, str] | None:
    """(rule, message) when the resource's status says it is not a fact; else None."""
    kind = resource["resourceType"]
    status = resource.get("status")
    if status == "entered-in-error":
        return ENTERED_IN_ERROR, f"{kind} status is entered-in-error"
    rule = NOT_FACTS.get(kind, {}).get(status) if isinstance(status, str) else None
    if rule is not None:
        return rule, f"{kind} status is {status}"
    flag = NOT_DONE_FLAGS.get(kind)
    if flag is not None and resource.get(flag[0]) is True:
        return flag[1], f"{kind} {flag[0]} is true"
    if kind == "Observation" and not resource.get("component") and not _valued(resource):
        if resource.get("dataAbsentReason"):
            return ABSENT, "Observation has no value, only a dataAbsentReason"
        if resource.get("hasMember"):
            return MEMBERS, "Observation groups members that are read as their own Observations"
    if kind == "DiagnosticReport" and resource.get("result") and not _presents_text(resource):
        return PANEL, "DiagnosticReport groups results that are read as their own Observations"
    if kind in VERIFIED:
        codes = _codes(resource.get("verificationStatus"))
        if "entered-in-error" in codes:
            return ENTERED_IN_ERROR, f"{kind} verificationStatus is entered-in-error"
        if "refuted" in codes:
            return REFUTED, f"{kind} verificationStatus is refuted"
    return None
