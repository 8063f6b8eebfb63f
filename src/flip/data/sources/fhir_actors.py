"""FHIR Practitioner, Organization and Location as OMOP provider, care_site and location rows.

Each becomes a `SourceRow` keyed by its FHIR key (`Practitioner/id`…), so its CDM id is
`stable_id(system, table, key)`: the id that events and visits referring to it carry
(`flip.data.cdm.rows.actor_id`). A field too long for its CDM column is nulled with a
warning rather than cut.
"""

from __future__ import annotations

from typing import Any

from flip.data.sources.records import GENDERS, SourceRow

#: FHIR resource type -> the CDM table it fills.
ACTORS = {"Practitioner": "provider", "Organization": "care_site", "Location": "location"}

#: The US National Provider Identifier system.
NPI = "http://hl7.org/fhir/sid/us-npi"


def _fits(
    values: dict[str, object], warnings: list[str], column: str, value: str | None, size: int
) -> None:
    """Set `column` to `value` when it fits in `size` characters; else null it with a warning."""
    if value is None or len(value) <= size:
        values[column] = value
    else:
        warnings.append(f"fhir.{column}.too_long")


def _person_name(names: list[Any] | None) -> str | None:
    for name in names or []:
        text = name.text or " ".join([*(name.prefix or []), *(name.given or []), name.family or ""])
        if text.strip():
            return text.strip()
    return None


def _first_identifier(m: Any) -> str | None:
    return next((i.value for i in m.identifier or [] if i.value), None)


def provider(key: str, m: Any, location: str, raw: bytes) -> SourceRow:
    """The provider row of a Practitioner."""
    values: dict[str, object] = {
        "gender_concept_id": GENDERS.get(m.gender or "", 0),
        "gender_source_value": m.gender,
        "year_of_birth": m.birthDate.year if m.birthDate else None,
    }
    warnings: list[str] = []
    _fits(values, warnings, "provider_name", _person_name(m.name), 255)
    npi = next((i.value for i in m.identifier or [] if i.system == NPI), None)
    _fits(values, warnings, "npi", npi, 20)
    _fits(values, warnings, "provider_source_value", _first_identifier(m) or key, 50)
    return SourceRow(key, "provider", values, None, location, raw, tuple(warnings))


def care_site(key: str, m: Any, location: str, raw: bytes) -> SourceRow:
    """The care_site row of an Organization."""
    values: dict[str, object] = {"place_of_service_concept_id": 0}
    warnings: list[str] = []
    _fits(values, warnings, "care_site_name", m.name, 255)
    _fits(values, warnings, "care_site_source_value", _first_identifier(m) or key, 50)
    kind = next((c.code for t in m.type or [] for c in t.coding or [] if c.code), None)
    _fits(values, warnings, "place_of_service_source_value", kind, 50)
    return SourceRow(key, "care_site", values, None, location, raw, tuple(warnings))


def location(key: str, m: Any, where: str, raw: bytes) -> SourceRow:
    """The location row of a Location (its address and position)."""
    address = m.address
    lines = (address.line or []) if address else []
    values: dict[str, object] = {"country_concept_id": 0}
    warnings: list[str] = []
    _fits(values, warnings, "address_1", lines[0] if lines else None, 50)
    _fits(values, warnings, "address_2", lines[1] if len(lines) > 1 else None, 50)
    _fits(values, warnings, "city", address.city if address else None, 50)
    _fits(values, warnings, "state", address.state if address else None, 2)
    _fits(values, warnings, "zip", address.postalCode if address else None, 9)
    _fits(values, warnings, "county", address.district if address else None, 20)
    _fits(values, warnings, "country_source_value", address.country if address else None, 80)
    _fits(values, warnings, "location_source_value", m.name or key, 50)
    if m.position is not None:
        values["latitude"] = float(m.position.latitude)
        values["longitude"] = float(m.position.longitude)
    return SourceRow(key, "location", values, None, where, raw, tuple(warnings))
