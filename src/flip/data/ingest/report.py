"""What one ingest run did with each record it read, and the rules it counted them under."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

#: The skip rule of a record that a later record with the same key replaced in one run.
SUPERSEDED = "identity.superseded_in_run"

#: The skip rule of a record older (by its version: HL7 MSH-7, FHIR versionId or
#: lastUpdated) than the version an earlier run stored, which stays.
OLDER_THAN_STORED = "identity.older_than_stored"

#: The skip rule of a patient record whose business identifier names a person already
#: loaded (earlier in the run, or by another source); its facts file under that person.
SAME_PERSON = "person.identifier.known"

#: The skip rule of a patient record whose identifier was retired by a merge (an HL7 A40):
#: its person was merged into another, under which its facts file.
MERGED_AWAY = "person.merged_away"

#: The skip (and warning) rule of a discharge that names no visit (an HL7 A03 without
#: PV1-19) when it fits no open visit of its patient: no visit is made of it; it is
#: kept until an open visit of its patient fits it, which it then ends (see discharges).
DISCHARGE_UNMATCHED = "hl7.visit.discharge_unmatched"
#: The skip rule of a cancel-discharge (HL7 A13) naming no visit: it makes no visit, and
#: drops the kept discharge it fits (see discharges).
DISCHARGE_CANCELLED = "hl7.visit.discharge_cancelled"

#: The warning rule of such a record whose birth date or gender differ from the person's.
DEMOGRAPHICS_CONFLICT = "person.demographics.conflict"


#: The warning of a withdrawing record (entered in error…) of a patient whom rows or
#: another source system still name: the person stays.
WITHDRAWN_PERSON_KEPT = "withdrawn.person_kept"

#: The warning of a withdrawing record that says an earlier version of it was sent (an
#: HL7 result deleted or posted in error, a FHIR versionId above 1) and finds nothing
#: stored to withdraw (never loaded, or sent under another key: an OBX renumbered
#: since), or whose stored version is newer. A record first seen as not a fact is
#: skipped by its status rule alone.
WITHDRAWN_NOTHING = "withdrawn.nothing_stored"

#: The warning counted for a value whose unit FLIP cannot read (kept as sent, unit concept 0).
UNIT_UNREADABLE = "unit.unreadable"

#: A fact whose visit (encounter) is not stored (quarantined, or never sent): it loads
#: with no visit_occurrence_id rather than pointing at a visit that does not exist.
VISIT_MISSING = "reference.visit.missing"


@dataclass
class IngestReport:
    """What one ingest run read, loaded, left unchanged, quarantined and skipped.

    `unread` lists the files or tables of the source that were not read, with why;
    `conflicts` the patient records whose demographics contradict the person they name.
    Every record read ends in exactly one of loaded, unchanged, quarantined (`rules`
    counts why) or skipped (`skipped_rules` counts why). `warnings` counts optional
    fields nulled because they failed to parse, per rule; their records still load.
    `pruned` counts the records of earlier runs that a pruning run removed (see prune),
    `pruned_rows` their rows per table; they are not among the records read. `withdrawn`
    counts the records of earlier runs whose rows a record of this run withdrew (re-sent
    as entered in error, refuted, cancelled: skipped by that rule), `withdrawn_rows` the
    rows removed per table.
    """

    run_id: int
    read: int = 0
    loaded: int = 0
    unchanged: int = 0
    quarantined: int = 0
    skipped: int = 0
    rows: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    skipped_rules: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)
    unread: dict[str, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    pruned: int = 0
    pruned_rows: Counter[str] = field(default_factory=Counter)
    withdrawn: int = 0
    withdrawn_rows: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary."""
        return {
            "run_id": self.run_id,
            "read": self.read,
            "loaded": self.loaded,
            "unchanged": self.unchanged,
            "quarantined": self.quarantined,
            "skipped": self.skipped,
            "rows": dict(self.rows),
            "rules": dict(self.rules),
            "skipped_rules": dict(self.skipped_rules),
            "warnings": dict(self.warnings),
            "unmapped": dict(self.unmapped),
            "unread": dict(self.unread),
            "conflicts": list(self.conflicts),
            "pruned": self.pruned,
            "pruned_rows": dict(self.pruned_rows),
            "withdrawn": self.withdrawn,
            "withdrawn_rows": dict(self.withdrawn_rows),
        }


@contextmanager
def restored_on_error(report: IngestReport) -> Iterator[IngestReport]:
    """Run a block that counts into `report`; if it raises, put every counter back as it
    was (the batch it counted was rolled back)."""
    before = copy.deepcopy(report)
    try:
        yield report
    except BaseException:
        for f in fields(IngestReport):
            setattr(report, f.name, getattr(before, f.name))
        raise
