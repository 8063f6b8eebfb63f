"""Configuration: the per-site YAML file (site.yaml) and the site's policy."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flip.problems import first_problem, read_yaml

#: No site policy lets a task train, evaluate or share statistics on fewer rows than this.
ROW_FLOOR = 10


class AutoApproval(BaseModel):
    """A rule under which the agent approves a task without waiting for the site admin."""

    model_config = ConfigDict(extra="forbid")

    kinds: list[str] = Field(min_length=1, description="Task kinds the rule covers.")
    projects: list[int] | None = Field(None, description="Hub project ids; None: any allowed.")
    max_rounds: int | None = Field(
        None, ge=1, description="Only tasks of at most this many rounds."
    )


#: The default `max_audit_cells`: at 5,000,000 cells (250 kept sets over 20,000 persons,
#: or 50 over 100,000) a cold first differencing check took ~3 s and 280-325 MB peak RSS on
#: a loaded 2-core machine (random half-sized sets, a fresh process: docs/site-setup.md).
AUDIT_CELLS = 5_000_000

#: The default `max_item_seconds`: a Circe query of 100 inclusion rules takes ~15 s at a
#: site (translation and statements, linear in the rules), so 120 s leaves room to spare.
ITEM_SECONDS = 120.0

#: The federated analysis kinds a policy may allow.
AnalysisKind = Literal["table1", "survival", "regression", "harmonisation"]


class SitePolicy(BaseModel):
    """What a site allows: the smallest count it releases, and what may run on its data.

    The agent and the ClientApp enforce it (flip.site.policy); a task that passes it
    still runs only once the site approved its exact hash, by hand or by `auto_approve`.
    A key it does not know is refused: a misspelt `max_epsilon` must not drop the DP ceiling.
    """

    model_config = ConfigDict(extra="forbid")

    min_cell_size: int = Field(10, ge=1)
    round_counts_to: int = Field(
        1,
        ge=1,
        description="Released counts and bins rounded to the nearest multiple of this (1: exact).",
    )
    query_budget: int | None = Field(
        None, ge=1, description="Cohort queries the site answers per project; None: no limit."
    )
    max_audit_cells: int | None = Field(
        AUDIT_CELLS,
        ge=1,
        description="The largest differencing audit the site keeps for a project: kept sets "
        "x persons. Past it the site refuses the project's new releases (each check of a "
        "larger audit takes longer and more memory); None: no limit.",
    )
    max_item_seconds: float | None = Field(
        ITEM_SECONDS,
        gt=0,
        description="Seconds the agent gives one work item (a query, say) before it refuses "
        "it with the reason and goes on; checked between steps; None: no limit.",
    )
    min_rows: int | None = Field(
        None,
        ge=ROW_FLOOR,
        description="The fewest rows in a task's training or test split that the site trains, "
        f"evaluates or shares statistics on; default: min_cell_size, never below {ROW_FLOOR}.",
    )
    min_time_bin: float = Field(
        7.0,
        gt=0,
        le=1e6,
        description="The narrowest Kaplan-Meier time bin (days) the site releases a survival "
        "analysis on: on a finer grid a bin's end would tell one person's follow-up.",
    )
    allowed_task_kinds: list[str] = Field(default_factory=lambda: ["tabular-logreg"])
    allowed_analysis_kinds: list[AnalysisKind] | None = Field(
        None, description="Federated analysis kinds the site runs; None: every kind."
    )
    max_epsilon: float | None = Field(
        None,
        gt=0,
        description="Require DP; the epsilon every DP run at the site spends, summed, stays "
        "within this ceiling.",
    )
    max_delta: float = Field(
        1e-5,
        gt=0,
        le=1e-3,
        description="The largest delta a DP task may name; each epsilon the site's budget "
        "is charged is computed at this delta (after a change, charges at the old and the new "
        "delta add up by basic composition).",
    )
    max_evaluations: int | None = Field(
        100,
        ge=1,
        description="Evaluations of one task the site answers across all runs (each is an "
        "exact query of its rows with server-chosen weights); None: no limit.",
    )
    max_rounds: int | None = Field(None, ge=1, description="No task of more rounds.")
    allowed_projects: list[int] | None = Field(
        None, description="Hub projects the site works for; None: any it joined."
    )
    allowed_tables: list[str] | None = Field(
        None, description="CDM tables queries and tasks may read; None: all of them."
    )
    auto_approve: list[AutoApproval] = Field(default_factory=list)
    custom_seconds: float = Field(
        900.0,
        gt=0,
        le=86_400,
        description="Wall-clock (and CPU) seconds a custom task's code may run per round.",
    )
    custom_memory_mb: int = Field(
        4096, ge=256, description="Memory (address space, MB) a custom task's process may use."
    )
    custom_unconfined: bool = Field(
        False,
        description="Run custom task code even where the host cannot confine it (network, "
        "PID and user isolation): weaker, only an audit hook and resource limits remain.",
    )
    share_logs: bool = Field(
        False,
        description="Share this site's log of each run it joined (joined, rounds trained, "
        "refusals) with the hub; off: the hub sees only the site's reply.",
    )

    share_quality: bool = Field(
        False,
        description="Release this site's data-quality aggregates (counts per check and rule, "
        "completeness, unmapped-code rates, unit coverage; small counts suppressed) to the "
        "hub's network view.",
    )

    def fewest_rows(self) -> int:
        """The fewest rows a split of a task may have here: `min_rows`, else `min_cell_size`,
        and never below ROW_FLOOR."""
        return max(ROW_FLOOR, self.min_rows or self.min_cell_size)


class PersonIdentifier(BaseModel):
    """The identifier that decides who a patient is, as each source kind carries it.

    `system` is its FHIR identifier system (e.g. https://fhir.nhs.uk/Id/nhs-number). An
    HL7 v2 PID-3 repetition carries it when its assigning authority (CX.4: namespace or
    OID) is `hl7v2_authority` and its type (CX.5) is `hl7v2_type`, each when given; with
    neither, when CX.4 names the system or, for a `urn:oid:` system, its OID. A table
    carries it in the column its mapping's person entry names `identifier`.
    """

    system: str = Field(min_length=1)
    hl7v2_authority: str | None = None
    hl7v2_type: str | None = None


def _person_identifier(value: object) -> object:
    """site.yaml may name the person identifier by its system alone."""
    return {"system": value} if isinstance(value, str) else value


class SiteConfig(BaseModel):
    """One site: its name, its store, its ledger (approvals and audit) and its policy."""

    name: str
    store: str
    ledger: str
    policy: SitePolicy = Field(default_factory=SitePolicy)
    hub: str | None = None
    credential: str = "credential"
    device: str = Field(
        "auto",
        description="Where this site trains: auto (a CUDA GPU when torch finds one, else the "
        "CPU), cpu, cuda or cuda:N.",
    )
    code_systems: dict[str, str] = Field(
        default_factory=dict,
        description="The site's own code system names, URIs or OIDs (e.g. an HL7 v2 99zzz "
        "name) -> OMOP vocabulary_id; they win over FLIP's table when codes are mapped.",
    )
    person_identifier: PersonIdentifier | None = Field(
        None,
        description="Identifier that decides who a patient is (e.g. an MRN system or "
        "https://fhir.nhs.uk/Id/nhs-number): one person across resources, sources and kinds.",
    )

    _identifier = field_validator("person_identifier", mode="before")(_person_identifier)

    @classmethod
    def load(cls, path: Path) -> SiteConfig:
        """Read a site.yaml file; relative paths in it are relative to the file."""
        data = read_yaml(path) or {}
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"{path}: {first_problem(exc)}") from None
        base = path.parent
        for key in ("store", "ledger", "credential"):
            value = getattr(config, key)
            if "://" not in value and not Path(value).is_absolute():
                setattr(config, key, str(base / value))
        return config

    def save(self, path: Path) -> None:
        """Write this config as YAML."""
        path.write_text(yaml.safe_dump(self.model_dump(), sort_keys=False), encoding="utf-8")


class IngestSettings(BaseModel):
    """What an ingest reads from site.yaml: the site's code systems, person identifier and
    the day order of its OMOP exports' day- or month-first dates ("dmy" or "mdy")."""

    code_systems: dict[str, str] = Field(default_factory=dict)
    person_identifier: PersonIdentifier | None = None
    date_order: Literal["dmy", "mdy"] | None = None

    _identifier = field_validator("person_identifier", mode="before")(_person_identifier)

    @classmethod
    def load(cls, path: Path) -> IngestSettings:
        """Read only these keys, so an ingest works with a site.yaml that holds nothing else;
        a bad value is a ValueError naming the file and the key (a day order in any case)."""
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            data = {}
        order = data.get("date_order")
        try:
            return cls.model_validate(
                {
                    "code_systems": data.get("code_systems") or {},
                    "person_identifier": data.get("person_identifier"),
                    "date_order": order.lower() if isinstance(order, str) else order,
                }
            )
        except ValidationError as exc:
            raise ValueError(f"{path}: {first_problem(exc)}") from None
