"""An in-memory index of a store's concepts: code -> standard concept, following "Maps to"."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from flip.data.cdm.schema import concept, concept_relationship
from flip.data.cdm.store import Store
from flip.data.terminology.units import normalize_unit, unit_concept_id

#: Code system URIs (FHIR, HL7) -> OMOP vocabulary_id.
SYSTEM_VOCABULARIES: dict[str, str] = {
    "http://snomed.info/sct": "SNOMED",
    "http://loinc.org": "LOINC",
    "http://hl7.org/fhir/sid/icd-10": "ICD10",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD10CM",
    "http://unitsofmeasure.org": "UCUM",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
}


def system_vocabulary(system: str) -> str | None:
    """The OMOP vocabulary_id of a code system URI, or None when FLIP does not know it."""
    return SYSTEM_VOCABULARIES.get(system.rstrip("/"))


@dataclass(frozen=True)
class Mapping:
    """How one source code maps: its standard concept (0 if unmapped) and that concept's domain."""

    concept_id: int
    domain_id: str | None
    source_concept_id: int
    reason: str


@dataclass
class Vocabulary:
    """Concepts by (vocabulary_id, code), their domains, "Maps to" links and local code maps."""

    by_code: dict[tuple[str, str], tuple[int, str, bool]]
    maps_to: dict[int, int]
    domains: dict[int, str]
    local_codes: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    _memo: dict[tuple[str, str], Mapping] = field(default_factory=dict, repr=False)
    _units: dict[str, int] = field(default_factory=dict, repr=False)

    @classmethod
    def from_store(cls, store: Store) -> Vocabulary:
        """Read the store's concept and "Maps to" rows into memory."""
        by_code: dict[tuple[str, str], tuple[int, str, bool]] = {}
        domains: dict[int, str] = {}
        maps_to: dict[int, int] = {}
        with store.connect() as conn:
            rows = conn.execute(
                select(
                    concept.c.concept_id,
                    concept.c.vocabulary_id,
                    concept.c.concept_code,
                    concept.c.domain_id,
                    concept.c.standard_concept,
                ).where(concept.c.invalid_reason.is_(None))
            )
            for concept_id, vocabulary_id, code, domain_id, standard in rows:
                by_code[(vocabulary_id, code)] = (concept_id, domain_id, standard == "S")
                domains[concept_id] = domain_id
            links = conn.execute(
                select(concept_relationship.c.concept_id_1, concept_relationship.c.concept_id_2)
                .where(concept_relationship.c.relationship_id == "Maps to")
                .where(concept_relationship.c.invalid_reason.is_(None))
            )
            for source_id, target_id in links:
                maps_to[source_id] = target_id
        return cls(by_code=by_code, maps_to=maps_to, domains=domains)

    def with_local_codes(self, local: dict[tuple[str, str], tuple[str, str]]) -> Vocabulary:
        """A copy that also maps (local system, local code) -> (standard system, code)."""
        return Vocabulary(self.by_code, self.maps_to, self.domains, {**self.local_codes, **local})

    def map(self, system: str, code: str) -> Mapping:
        """Map a coded value to its standard concept, saying why it mapped or did not."""
        found = self._memo.get((system, code))
        if found is None:
            found = self._memo[(system, code)] = self._map(system, code)
        return found

    def _map(self, system: str, code: str) -> Mapping:
        if (system, code) in self.local_codes:
            system, code = self.local_codes[(system, code)]
        vocabulary_id = system_vocabulary(system)
        if vocabulary_id is None:
            return Mapping(0, None, 0, f"unknown code system {system}")
        found = self.by_code.get((vocabulary_id, code))
        if found is None:
            return Mapping(0, None, 0, f"{vocabulary_id} code {code} is not in the vocabulary")
        concept_id, domain_id, standard = found
        if standard:
            return Mapping(concept_id, domain_id, concept_id, "standard concept")
        target = self.maps_to.get(concept_id)
        if target is None:
            return Mapping(0, domain_id, concept_id, f"{vocabulary_id} {code} has no 'Maps to'")
        return Mapping(target, self.domains.get(target), concept_id, "non-standard, via 'Maps to'")

    def unit(self, unit: str | None) -> int:
        """The concept id of a unit as sent (UCUM or a common lab spelling), or 0.

        The store's own UCUM concepts win (a loaded Athena download); FLIP's table of
        common units answers the rest."""
        if not unit:
            return 0
        found = self._units.get(unit)
        if found is None:
            found = self._units[unit] = self._unit(unit)
        return found

    def _unit(self, unit: str) -> int:
        code = normalize_unit(unit)
        for spelling in (code, unit):
            known = self.by_code.get(("UCUM", spelling or ""))
            if known is not None:
                return known[0]
        return unit_concept_id(code)
