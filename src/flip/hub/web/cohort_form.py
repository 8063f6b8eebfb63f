"""The cohort builder's form <-> the cohort definition JSON the sites compile.

The hub never imports the site's cohort engine (`flip.data`); the domains listed here
are the ones its definition accepts, and each site validates the JSON again.
"""

from __future__ import annotations

from datetime import date
from typing import Any

#: The engine's tables, with what a criterion on each means, in the order the form lists them.
DOMAINS = {
    "condition_occurrence": "Condition",
    "drug_exposure": "Drug",
    "procedure_occurrence": "Procedure",
    "measurement": "Measurement (value range)",
    "observation": "Observation (value range)",
    "visit_occurrence": "Visit",
    "image_occurrence": "Imaging modality",
    "note": "Note mentions",
    "note_nlp": "Note affirms (NLP)",
}
VALUED = ("measurement", "observation")
#: Criterion rows the form offers (each may be left empty).
ROWS = 4
#: OMOP concept ids are 32-bit integers.
MAX_CONCEPT_ID = 2**31 - 1


class FormProblem(ValueError):
    """A field of the form that cannot become part of a definition; the message names it."""


def _number(field: str, text: str, kind: type = float) -> Any:
    text = text.strip()
    if not text:
        return None
    if not text.isascii() or len(text) > 40:
        raise FormProblem(f"{field}: {text[:20]!r} is not a number (digits 0-9, at most 40)")
    try:
        return kind(text)
    except ValueError:
        raise FormProblem(f"{field}: {text!r} is not a number") from None


def _date(field: str, text: str) -> str:
    """The day `text` names, as YYYY-MM-DD; FormProblem naming the field if it names none."""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise FormProblem(f"{field}: {text[:20]!r} is not a date (YYYY-MM-DD)") from None


def _concepts(field: str, text: str) -> list[int]:
    found = []
    for part in text.replace(",", " ").split():
        if not (part.isascii() and part.isdigit()) or len(part) > len(str(MAX_CONCEPT_ID)):
            raise FormProblem(f"{field}: {part[:20]!r} is not a concept id (digits 0-9 only)")
        if int(part) > MAX_CONCEPT_ID:
            raise FormProblem(f"{field}: {part} is beyond the largest concept id")
        found.append(int(part))
    return found


def definition_from_form(form: dict[str, str]) -> dict[str, Any]:
    """The cohort definition the filled-in form describes; FormProblem names a bad field."""
    out: dict[str, Any] = {"name": form.get("name", "").strip() or "cohort"}
    for part in ("include", "exclude"):
        criteria = []
        for i in range(ROWS):
            prefix = f"{part}-{i}"
            concepts = _concepts(f"{prefix} concept ids", form.get(f"{prefix}-concepts", ""))
            if not concepts:
                continue
            table = form.get(f"{prefix}-table", "")
            if table not in DOMAINS:
                raise FormProblem(f"{prefix} domain: {table!r} is not one the sites count")
            criterion: dict[str, Any] = {
                "table": table,
                "concept_ids": concepts,
                "descendants": form.get(f"{prefix}-descendants") == "on",
            }
            for bound in ("value_min", "value_max"):
                value = _number(f"{prefix} {bound}", form.get(f"{prefix}-{bound}", ""))
                if value is not None:
                    if table not in VALUED:
                        raise FormProblem(f"{prefix} {bound}: only measurements and observations")
                    criterion[bound] = value
            for bound in ("start", "end"):
                if when := form.get(f"{prefix}-{bound}", "").strip():
                    criterion[bound] = _date(f"{prefix} {bound}", when)
            if criterion.get("start", "") > criterion.get("end", "9999-12-31"):
                raise FormProblem(f"{prefix}: the window starts after it ends")
            criteria.append(criterion)
        if criteria:
            out[part] = criteria
    for bound in ("age_min", "age_max"):
        value = _number(bound, form.get(bound, ""), int)
        if value is not None:
            out[bound] = value
    sexes = [s for s in ("female", "male") if form.get(f"sex-{s}") == "on"]
    if sexes:
        out["sex"] = sexes
    shown = [h for h in ("age", "sex") if form.get(f"histogram-{h}") == "on"]
    if shown:
        out["histograms"] = shown
    return out
