"""Who a patient is, whatever the source kind: the site's person identifier.

A site names one business identifier (an NHS number, an MRN of one assigning authority)
that decides identity. Every reader that finds it on a patient record keys the person
`Patient?identifier=SYSTEM|VALUE` (records.IDENTIFIED), so the same value from a FHIR
Patient.identifier, an HL7 v2 PID-3 repetition or a table's identifier column is one
person_id in the store, whichever source system loads it first.
"""

from __future__ import annotations

from dataclasses import dataclass

from flip.data.sources.records import IDENTIFIED, MAX_KEY

#: The warning of a patient record whose identifier is too long to be a key: it keeps its
#: source's own key (one person per source record) instead of its business identity.
TOO_LONG = "person_identifier.too_long"

_OID = "urn:oid:"


def same_system(system: str) -> str:
    """An identifier system as compared: case and a trailing slash do not tell systems apart
    (`HTTP://Hospital.org/MRN/` is `http://hospital.org/mrn`)."""
    return system.strip().rstrip("/").casefold()


@dataclass(frozen=True)
class PersonIdentity:
    """The site's person identifier and how each source kind carries it.

    `system` is its FHIR identifier system (and names it in every person key). An HL7 v2
    PID-3 repetition carries it when its assigning authority (CX.4, namespace or universal
    id) is `authority` and its identifier type (CX.5) is `type_code`, each when given;
    with neither, when CX.4 names `system` itself or, for a `urn:oid:` system, its OID.
    A table carries it in the column its mapping's person entry names `identifier`.
    """

    system: str
    authority: str | None = None
    type_code: str | None = None

    @classmethod
    def of(cls, value: PersonIdentity | str | None) -> PersonIdentity | None:
        """The identity a caller named: an identity, a bare FHIR system, or none."""
        if value is None or isinstance(value, PersonIdentity):
            return value
        return cls(value) if value.strip() else None

    def key(self, value: str) -> str | None:
        """The person key of an identifier value; None when it is blank (no identifier: a
        blank is no one's, not one person's) or too long to be a key."""
        value = value.strip()
        key = f"{IDENTIFIED}{self.system}|{value}"
        return key if value and len(key) <= MAX_KEY else None

    def is_system(self, system: str | None) -> bool:
        """Whether a FHIR identifier system is this one, as sites spell it."""
        return bool(system) and same_system(system or "") == same_system(self.system)

    def in_hl7(self, namespace: str, universal_id: str, type_code: str) -> bool:
        """Whether an HL7 v2 CX identifier with this assigning authority (CX.4.1, CX.4.2)
        and identifier type (CX.5) carries the person identifier."""
        authorities = {same_system(a) for a in (namespace, universal_id) if a}
        if self.authority is None and self.type_code is None:
            wanted = {same_system(self.system)}
            if self.system.lower().startswith(_OID):
                wanted.add(same_system(self.system[len(_OID) :]))
            return bool(authorities & wanted)
        if self.authority is not None and same_system(self.authority) not in authorities:
            return False
        return self.type_code is None or same_system(self.type_code) == same_system(type_code)
