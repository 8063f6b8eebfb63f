"""An in-memory index of a store's concepts: code -> standard concept, following "Maps to"."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import select

from flip.data.cdm.schema import concept, concept_relationship
from flip.data.cdm.store import Store
from flip.data.terminology.units import normalize_unit, unit_concept_id

#: OMOP vocabulary_id -> the names that mean it: FHIR and terminology.hl7.org URIs, NHS URIs,
#: OIDs, HL7 v2 table 0396 names (and the vocabulary_id itself). Matched case-insensitively.
CODE_SYSTEMS: dict[str, tuple[str, ...]] = {
    "SNOMED": (
        "http://snomed.info/sct",
        "urn:oid:2.16.840.1.113883.6.96",
        "urn:oid:2.16.840.1.113883.2.1.3.2.4.15",  # the NHS's OID for SNOMED CT (UK edition)
        "SCT",
        "SNM",
        "SNM3",  # HL7 table 0396: SNOMED International
        "SNOMED",
    ),
    "LOINC": ("http://loinc.org", "urn:oid:2.16.840.1.113883.6.1", "LN", "LNC", "LOINC"),
    "ICD10": (
        "http://hl7.org/fhir/sid/icd-10",
        "http://terminology.hl7.org/CodeSystem/icd10",
        "urn:oid:2.16.840.1.113883.6.3",
        "I10",
        "ICD10",
    ),
    "ICD10CM": (
        "http://hl7.org/fhir/sid/icd-10-cm",
        "http://terminology.hl7.org/CodeSystem/icd10CM",
        "urn:oid:2.16.840.1.113883.6.90",
        "I10C",
        "ICD10CM",
    ),
    "ICD10PCS": (
        "http://www.cms.gov/Medicare/Coding/ICD10",
        "urn:oid:2.16.840.1.113883.6.4",
        "I10P",
        "ICD10PCS",
    ),
    "ICD9CM": (
        "http://hl7.org/fhir/sid/icd-9-cm",
        "http://terminology.hl7.org/CodeSystem/icd9cm",
        "urn:oid:2.16.840.1.113883.6.103",
        "urn:oid:2.16.840.1.113883.6.2",
        "I9C",
        "I9CDX",
        "I9",
        "ICD9",
        "ICD9CM",
    ),
    "ICD9Proc": ("urn:oid:2.16.840.1.113883.6.104", "I9CP", "ICD9PROC"),
    "CVX": ("http://hl7.org/fhir/sid/cvx", "urn:oid:2.16.840.1.113883.12.292", "CVX", "HL70292"),
    "NDC": ("http://hl7.org/fhir/sid/ndc", "urn:oid:2.16.840.1.113883.6.69", "NDC"),
    "CPT4": (
        "http://www.ama-assn.org/go/cpt",
        "urn:oid:2.16.840.1.113883.6.12",
        "C4",
        "CPT",
        "CPT4",
    ),
    "HCPCS": (
        "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
        "urn:oid:2.16.840.1.113883.6.285",
        "urn:oid:2.16.840.1.113883.6.14",
        "HCPCS",
    ),
    "RxNorm": (
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "urn:oid:2.16.840.1.113883.6.88",
        "RXNORM",
    ),
    "ATC": ("http://www.whocc.no/atc", "urn:oid:2.16.840.1.113883.6.73", "WC", "ATC"),
    "OPCS4": (
        "https://fhir.nhs.uk/Id/opcs-4",  # NHS England's
        "https://fhir.hl7.org.uk/Id/opcs-4",  # HL7 UK's earlier URI, still sent
        "OPCS4",
        "OPCS-4",
        "OPCS",
    ),
    # dm+d codes are SNOMED CT UK Drug Extension ids: sent under SNOMED's URI too (see
    # Vocabulary.map, which looks a SNOMED code it does not find up in dm+d).
    "dm+d": ("https://dmd.nhs.uk", "https://fhir.nhs.uk/Id/dmd-code", "DMD", "dm+d"),
    "Read": (
        "http://read.info/readv2",
        "urn:oid:2.16.840.1.113883.6.29",  # HL7's registry: Read Codes Version 2
        "urn:oid:2.16.840.1.113883.2.1.6.2",  # the NHS's (GP2GP): Read Codes Version 2
        "READ",
        "READV2",
        "RD2",
    ),
    "UCUM": ("http://unitsofmeasure.org", "urn:oid:2.16.840.1.113883.6.8", "UCUM"),
}

#: What an HL7 v2 reader sends for a coding system name it cannot resolve (urn:hl7v2:NAME).
HL7_NAME_PREFIX = "urn:hl7v2:"
_OID = re.compile(r"^[0-2](\.\d+)+$")


def system_key(system: str) -> str:
    """The form a code system name is looked up by: lower case, no trailing slash,
    an OID as urn:oid:…, an HL7 v2 name without FLIP's urn:hl7v2: prefix and, a bare name,
    without hyphens and spaces (`ICD-10-CM` is `I10C`'s ICD10CM, `CPT-4` CPT4)."""
    key = system.strip().rstrip("/").lower()
    if key.startswith(HL7_NAME_PREFIX):
        key = key[len(HL7_NAME_PREFIX) :]
    if _OID.match(key):
        return f"urn:oid:{key}"
    return key if ":" in key or "/" in key else key.replace("-", "").replace(" ", "")


#: Every known name (as `system_key` gives it) -> OMOP vocabulary_id.
SYSTEM_VOCABULARIES: dict[str, str] = {
    system_key(name): vocabulary_id
    for vocabulary_id, names in CODE_SYSTEMS.items()
    for name in names
}


def system_vocabulary(system: str, declared: dict[str, str] | None = None) -> str | None:
    """The OMOP vocabulary_id of a code system name, URI or OID, or None when FLIP does
    not know it; `declared` (keys as `system_key` gives them) is the site's own and wins."""
    key = system_key(system)
    if declared and key in declared:
        return declared[key]
    return SYSTEM_VOCABULARIES.get(key)


def declared_systems(systems: dict[str, str]) -> dict[str, str]:
    """A site's declared code systems (name, URI or OID -> vocabulary_id), keyed for lookup."""
    return {system_key(name): vocabulary_id for name, vocabulary_id in systems.items()}


def hl7_system(name: str) -> str:
    """The code system URI of an HL7 v2 coding system name (HL7 table 0396): the first URI
    FLIP knows for its vocabulary (a URL, else an OID), else `urn:hl7v2:NAME`; "" for no
    name."""
    if not name:
        return ""
    vocabulary_id = SYSTEM_VOCABULARIES.get(system_key(name))
    names = CODE_SYSTEMS.get(vocabulary_id or "", ())
    uri = next((n for n in names if "://" in n), None) or next(
        (n for n in names if n.startswith("urn:oid:")), None
    )
    return uri or f"{HL7_NAME_PREFIX}{name}"


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
    systems: dict[str, str] = field(default_factory=dict)
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
        local_codes = {**self.local_codes, **local}
        return Vocabulary(self.by_code, self.maps_to, self.domains, local_codes, self.systems)

    def with_code_systems(self, systems: dict[str, str]) -> Vocabulary:
        """A copy that also knows the site's declared code systems (name, URI or OID ->
        OMOP vocabulary_id); they win over FLIP's own table."""
        declared = {**self.systems, **declared_systems(systems)}
        return Vocabulary(self.by_code, self.maps_to, self.domains, self.local_codes, declared)

    def map(self, system: str, code: str) -> Mapping:
        """Map a coded value to its standard concept, saying why it mapped or did not."""
        found = self._memo.get((system, code))
        if found is None:
            found = self._memo[(system, code)] = self._map(system, code)
        return found

    def _map(self, system: str, code: str) -> Mapping:
        if (system, code) in self.local_codes:
            system, code = self.local_codes[(system, code)]
        vocabulary_id = system_vocabulary(system, self.systems)
        if vocabulary_id is None:
            return Mapping(0, None, 0, f"unknown code system {system}")
        found = self.by_code.get((vocabulary_id, code))
        if found is None and vocabulary_id == "SNOMED":  # a UK Drug Extension (dm+d) id
            found = self.by_code.get(("dm+d", code))
            vocabulary_id = "dm+d" if found is not None else vocabulary_id
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
