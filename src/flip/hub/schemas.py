"""Request and response bodies of the hub API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    field_validator,
    model_validator,
)

from flip.bounds import MAX_CONCEPTS, MAX_CRITERIA, MAX_MAGNITUDE, describe, json_problems
from flip.problems import one_line
from flip.stats.attrition import circe_expression, is_released_step

#: The largest id or count the hub stores (PostgreSQL's INTEGER).
MAX_INT = 2**31 - 1
#: An object's id in a URL path.
PathId = Annotated[int, Path(ge=1, le=MAX_INT)]
Name = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")
Sha256 = Field(pattern=r"^[0-9a-f]{64}$")


def one_line_text(max_length: int, empty: str = "") -> Any:
    """A free-text field another party sends (a site's error or reason): at most `max_length`
    characters as sent, kept as one line of text (each run of whitespace or control
    characters one space: `flip.problems.one_line`), `empty` when nothing printable is left,
    so that it never carries a terminal escape or a forged line to where it is shown."""
    return Annotated[
        str, Field(max_length=max_length), AfterValidator(lambda text: one_line(text) or empty)
    ]


#: What a site's free text reads when it held nothing printable.
NO_REASON = "no reason given"


Password = Field(min_length=12, max_length=256, description="At least 12 characters.")


def _one_site(role: str, site: str | None) -> None:
    if (role == "site_admin") != (site is not None):
        raise ValueError("a site_admin needs `site`, and only a site_admin has one")


class UserIn(BaseModel):
    name: str = Name
    role: Literal["admin", "researcher", "viewer", "site_admin"]
    site: str | None = Field(None, description="The site a site_admin belongs to (its name).")
    expires_in_days: int | None = Field(
        None, ge=1, le=3650, description="The token's lifetime in days (default: the hub's cap)."
    )
    password: str | None = Field(
        None, min_length=12, max_length=256, description="Optional: lets the user log in."
    )
    current_password: str | None = Field(
        None, max_length=256, description="The admin's own password: needed from a session."
    )

    @model_validator(mode="after")
    def _site_admins_have_a_site(self) -> UserIn:
        _one_site(self.role, self.site)
        return self


class RoleIn(BaseModel):
    role: Literal["admin", "researcher", "viewer", "site_admin"]
    site: str | None = Field(None, description="The site a site_admin belongs to (its name).")
    current_password: str | None = Field(
        None, max_length=256, description="The admin's own password: needed from a session."
    )

    @model_validator(mode="after")
    def _site_admins_have_a_site(self) -> RoleIn:
        _one_site(self.role, self.site)
        return self


class LoginIn(BaseModel):
    name: str = Name
    password: str = Field(max_length=256)
    code: str | None = Field(
        None,
        max_length=64,
        description="A TOTP code (or a recovery code): needed once the user enrolled TOTP.",
    )
    expires_in_hours: int = Field(12, ge=1, le=720, description="The session's lifetime.")


class PasswordIn(BaseModel):
    password: str = Password
    current_password: str | None = Field(
        None,
        max_length=256,
        description="The caller's password: users changing their own, or an admin's session.",
    )


class TokenRequest(BaseModel):
    expires_in_days: int | None = Field(
        None, ge=1, le=3650, description="The new token's lifetime in days (default: the cap)."
    )
    password: str | None = Field(
        None, max_length=256, description="The caller's password: needed from a session."
    )


#: A time the hub stores naive in UTC, answered with its zone (RFC 3339 `date-time`).
UtcTime = Annotated[datetime, AfterValidator(lambda t: t if t.tzinfo else t.replace(tzinfo=UTC))]


class NamedTokenIn(TokenRequest):
    #: What the token is for (a laptop, a CI job): unique among the user's tokens.
    name: str = Name


class ApiTokenInfo(BaseModel):
    id: int
    name: str
    prefix: str | None = Field(description="The token's first characters (its name, not it).")
    created_at: UtcTime | None = Field(description="None for a token older than the hub's 0020.")
    expires_at: UtcTime | None
    last_used_at: UtcTime | None = Field(
        description="When the token last opened a request, kept to the hour; None if never."
    )
    state: Literal["active", "expired"]


class ApiTokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    expires_at: UtcTime
    token: str = Field(description="Shown once; the hub keeps only its hash.")


class TokenOut(BaseModel):
    id: int
    name: str
    token: str = Field(description="Shown once; the hub keeps only its hash.")


class UserOut(BaseModel):
    id: int
    name: str
    role: str
    site: str | None


#: Days a site's enrolment token works, unless its admin asks for another lifetime.
ENROLMENT_DAYS = 7
#: The longest an enrolment token may work.
LONGEST_ENROLMENT_DAYS = 90


class EnrolmentRequest(BaseModel):
    expires_in_days: int = Field(
        ENROLMENT_DAYS,
        ge=1,
        le=LONGEST_ENROLMENT_DAYS,
        description="Days the enrolment token works; then the site cannot enrol with it.",
    )


class SiteIn(EnrolmentRequest):
    name: str = Name


class EnrolmentOut(BaseModel):
    id: int
    name: str
    enrolment_token: str = Field(description="One-time: the site exchanges it for a credential.")
    expires_at: UtcTime = Field(description="When the token stops working, if still unused.")


class EnrolIn(BaseModel):
    enrolment_token: str = Field(min_length=10, max_length=200)
    public_key: str | None = Field(
        None, max_length=1000, description="Ed25519 public key (PEM) the site signs with."
    )


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=5000)


class InviteIn(BaseModel):
    sites: list[str] = Field(min_length=1, max_length=500)


class MembersIn(BaseModel):
    users: list[str] = Field(min_length=1, max_length=500)


class ProjectOut(BaseModel):
    id: int
    name: str
    description: str
    owner: str
    members: list[str] = Field(description="Researchers who work on the project besides its owner.")
    member_ids: dict[str, int] = Field(
        default_factory=dict,
        description="Each member's user id (DELETE /projects/{id}/members/{user_id} removes one).",
    )
    sites: dict[str, str]


def _bounded_numbers(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse a spec or definition holding a number whose arithmetic at a site could overflow."""
    if problems := json_problems(value, max_magnitude=MAX_MAGNITUDE):
        raise ValueError(describe(problems))
    return value


class TaskIn(BaseModel):
    hash: str = Sha256
    kind: str = Field(min_length=1, max_length=40)
    spec: dict[str, Any] = Field(
        description=f"The task's configuration; every number within ±{MAX_MAGNITUDE:g}."
    )

    _spec_numbers = field_validator("spec")(_bounded_numbers)


class QueryIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    definition: dict[str, Any] = Field(
        description=f"A cohort definition, FLIP's (at most {MAX_CRITERIA} criteria, include and "
        f"exclude together, {MAX_CONCEPTS} concepts each) or an OHDSI Circe expression."
    )

    @field_validator("definition")
    @classmethod
    def _countable(cls, definition: dict[str, Any]) -> dict[str, Any]:
        criteria = []
        for part in ("include", "exclude"):
            listed = definition.get(part, [])
            if not isinstance(listed, list):
                raise ValueError(f"{part}: a list of criteria")
            criteria += [(part, i, c) for i, c in enumerate(listed)]
        if len(criteria) > MAX_CRITERIA:
            raise ValueError(
                f"{len(criteria)} criteria: a query may hold at most {MAX_CRITERIA} "
                "(include and exclude together)"
            )
        for part, i, criterion in criteria:
            concepts = criterion.get("concept_ids") if isinstance(criterion, dict) else None
            if isinstance(concepts, list) and len(concepts) > MAX_CONCEPTS:
                raise ValueError(
                    f"{part}.{i}.concept_ids: {len(concepts)} concepts, at most {MAX_CONCEPTS}"
                )
        _rules_within(circe_expression(definition))
        return _bounded_numbers(definition)


Bins = dict[str, int | None]
Histograms = Annotated[
    dict[Literal["age", "sex"], Annotated[Bins, Field(max_length=20)]],
    Field(description="Per breakdown, per bin: a released count, or null when suppressed."),
]


#: The most attrition steps a site sends: the primary criteria and up to 99 inclusion rules.
MAX_STEPS = 100
Attrition = Annotated[
    list[int | str],
    Field(
        max_length=MAX_STEPS,
        description="A Circe cohort's persons after its primary criteria and after each "
        'inclusion rule: a released count, "<N" below the site\'s threshold N, or "withheld" '
        "where the count would single out a few persons against another.",
    ),
]


class SiteCountOut(BaseModel):
    count: int | None
    suppressed: bool
    threshold: int
    error: str | None = None
    histograms: Histograms = Field(default_factory=dict)
    attrition: Attrition = Field(default_factory=list)


class QueryOut(BaseModel):
    id: int
    project_id: int
    name: str
    results: dict[str, SiteCountOut]
    pending: list[str]
    total: int | None = Field(description="Sum of released counts; None while any is suppressed.")
    histograms: Histograms = Field(
        default_factory=dict,
        description="Bins summed over sites; null where any site suppressed the bin.",
    )
    steps: list[str] = Field(
        default_factory=list,
        description="A Circe query's attrition steps: the primary criteria, then each rule.",
    )
    attrition: list[int | str] = Field(
        default_factory=list,
        description='Per step, the released counts summed over sites; "N+" where a site did '
        "not release its count (or has not answered): N is the part known.",
    )


class RunIn(BaseModel):
    task_hash: str = Sha256
    rounds: int = Field(ge=1, le=10000)
    strategy: str | None = Field(
        None,
        max_length=40,
        description="The task's Flower strategy (its spec's `strategy.name`, with the "
        "hyperparameters the sites approved); if given, it must be that one.",
    )
    runtime: Literal["simulation", "deployment"] = "simulation"


class RunOut(BaseModel):
    id: int
    project_id: int
    task_hash: str
    rounds: int
    strategy: str
    runtime: str
    status: str
    sites: dict[str, dict[str, str]]
    round_metrics: list[dict[str, float | None]] = Field(
        description="Per round, each metric; null where a round's value was not a number."
    )
    results: dict[str, Any] | None
    logs: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description="Per site, the run log entries it chose to share."
    )


class LogEntryIn(BaseModel):
    seq: int = Field(ge=1, le=MAX_INT, description="The entry's number in the site's own log.")
    at: one_line_text(40) = Field(description="When, as the site wrote it (one line).")
    action: Literal["run.joined", "run.stats", "run.trained", "run.refused"]
    detail: dict[str, Any]


class RunLogIn(BaseModel):
    entries: list[LogEntryIn] = Field(max_length=1000)


class RoundIn(BaseModel):
    round: int = Field(ge=1, le=MAX_INT)
    metrics: dict[Annotated[str, Field(max_length=100)], FiniteFloat] = Field(max_length=100)


class RunStatusIn(BaseModel):
    status: Literal["running", "completed", "failed", "cancelled"]
    results: dict[str, Any] | None = None


class SiteCountIn(BaseModel):
    count: int | None = Field(None, ge=0, le=MAX_INT)
    suppressed: bool
    threshold: int = Field(ge=1, le=MAX_INT)
    error: one_line_text(500, NO_REASON) | None = Field(
        None, description="Why the site could not count: shown as one line of text."
    )
    histograms: Histograms = Field(default_factory=dict)
    attrition: Attrition = Field(default_factory=list)

    @model_validator(mode="after")
    def _released_counts_meet_the_threshold(self) -> SiteCountIn:
        if self.count is not None and self.suppressed:
            raise ValueError("a suppressed count must not be sent")
        if self.count is not None and 0 < self.count < self.threshold:
            raise ValueError("count is below the site's own threshold")
        for by, bins in self.histograms.items():
            for name, n in bins.items():
                if not name.isprintable():
                    raise ValueError(f"histogram {by}: a bin's name is not one line of text")
                if len(name) > 40 or (
                    n is not None and not (n == 0 or self.threshold <= n <= MAX_INT)
                ):
                    raise ValueError(f"histogram {by}, bin {name[:40]!r}: not a released count")
        for i, value in enumerate(self.attrition):
            if not is_released_step(value, self.threshold) or (
                isinstance(value, int) and value > MAX_INT
            ):
                raise ValueError(f"attrition step {i + 1}: {str(value)[:40]!r} is not released")
        return self


class DecisionIn(BaseModel):
    project_id: int = Field(ge=1, le=MAX_INT)
    task_hash: str = Sha256
    decision: Literal["approved", "declined"]
    reason: one_line_text(2000) = Field("", description="Why: shown as one line of text.")


class RunReplyIn(BaseModel):
    status: Literal["joined", "refused"]
    reason: one_line_text(2000) = Field("", description="Why: shown as one line of text.")


class FlowerOut(BaseModel):
    address: str = Field(description="host:port of the hub's Flower SuperLink.")
    root_certificates: str | None = Field(
        description="PEM of the CA that signed the SuperLink's certificate (None without TLS)."
    )


class WorkOut(BaseModel):
    queries: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    analyses: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Analyses whose current round this site has yet to release or refuse.",
    )
    train: list[int] = Field(
        default_factory=list,
        description="Deployment runs this site joined that are running: serve them.",
    )
    flower: FlowerOut | None = Field(
        default=None, description="Where to connect a SuperNode, when the hub runs Flower."
    )


class NodeKeyIn(BaseModel):
    public_key: str = Field(
        min_length=20,
        max_length=2000,
        pattern=r"^ecdsa-sha2-nistp(256|384|521) [A-Za-z0-9+/=]+( [ -~]*)?\n?$",
        description="The site SuperNode's public key, OpenSSH format (ECDSA); its comment, "
        "if any, one line of printable ASCII.",
    )


class SiteActivityOut(BaseModel):
    site: str
    status: str
    projects: dict[int, str] = Field(description="Project id -> this site's status in it.")
    queries: list[dict[str, Any]] = Field(description="Queries asked, with what was released.")
    decisions: list[dict[str, Any]] = Field(description="Tasks this site decided on.")
    runs: list[dict[str, Any]] = Field(description="Runs and this site's reply.")
    audit: list[dict[str, Any]] = Field(description="Audit entries by or about this site.")


Signature = Field(min_length=1, max_length=200, description="Ed25519 signature, base64.")
PublicKeyPem = Field(
    None, max_length=1000, description="Ed25519 public key (PEM) the site signs its heads with."
)


class SignedHead(BaseModel):
    seq: int = Field(ge=0, le=MAX_INT, description="The newest entry's seq (0: empty chain).")
    hash: str = Sha256
    signature: str = Signature


class HeadProof(BaseModel):
    seq: int = Field(ge=0, le=MAX_INT, description="The seq of the head the hub kept last.")
    hash: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="The ledger's hash there; null if gone."
    )


class AnchorIn(SignedHead):
    public_key: str | None = PublicKeyPem
    proof: HeadProof | None = Field(
        None, description="The ledger's hash at the seq of the head the hub kept last."
    )


class AnchorOut(BaseModel):
    recorded: bool = Field(description="Whether the hub kept this head as the site's anchor.")
    anchor_seq: int = Field(description="The seq of the head the hub keeps: prove it next time.")
    problem: str | None = Field(None, description="How this head broke the ledger's chain.")
    hub_head: SignedHead = Field(description="The hub's own audit head, signed: keep it.")
    hub_key: str = Field(description="The hub's Ed25519 public key (PEM).")
    certify: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Run certificates naming this site that it has yet to countersign.",
    )


class CountersignIn(BaseModel):
    signature: str = Signature


class HubHeadsIn(BaseModel):
    heads: list[SignedHead] = Field(max_length=10_000)


class HubHeadsOut(BaseModel):
    ok: bool
    problems: list[str]


#: Analysis kinds the hub combines (flip.stats.federated), and harmonisation reports.
ANALYSIS_KINDS = ("table1", "survival", "regression", "harmonisation")
#: The largest analysis spec the hub takes, as JSON bytes.
MAX_ANALYSIS_SPEC = 64 * 1024
#: Seconds a round of an analysis waits for its sites by default: one day.
ANALYSIS_TIMEOUT = 86400


class AnalysisIn(BaseModel):
    spec: dict[str, Any] = Field(
        description="The analysis as `flip analysis submit` writes it: kind (table1, survival, "
        "regression, harmonisation), its data and optionally a Circe `cohort` ({name, "
        "expression}, at most 99 inclusion rules); sites approve its SHA-256. At most 64 KiB "
        f"of JSON, every number within ±{MAX_MAGNITUDE:g}."
    )
    timeout: int = Field(
        ANALYSIS_TIMEOUT,
        ge=10,
        le=30 * 86400,
        description="Seconds each round waits for the sites asked (the first round includes "
        "their admins' approval); then the hub goes on with the sites that answered and marks "
        "the others silent.",
    )

    @field_validator("spec")
    @classmethod
    def _known_kind(cls, spec: dict[str, Any]) -> dict[str, Any]:
        if spec.get("kind") not in ANALYSIS_KINDS:
            raise ValueError(f"kind: one of {', '.join(ANALYSIS_KINDS)}")
        if len(orjson.dumps(spec)) > MAX_ANALYSIS_SPEC:
            raise ValueError(
                f"the spec is over {MAX_ANALYSIS_SPEC // 1024} KiB (every site gets it at each "
                "poll until it answers)"
            )
        cohort = spec.get("cohort")
        if cohort is not None:
            if not isinstance(cohort, dict) or not isinstance(cohort.get("expression"), dict):
                raise ValueError("cohort: a Circe cohort, {name, expression}")
            _rules_within(cohort["expression"])
        return _bounded_numbers(spec)


def _rules_within(expression: dict[str, Any] | None) -> None:
    """ValueError when a Circe expression has more inclusion rules than attrition shows."""
    rules = (expression or {}).get("InclusionRules") or []
    if not isinstance(rules, list) or len(rules) >= MAX_STEPS:
        raise ValueError(f"InclusionRules: a list of at most {MAX_STEPS - 1} rules")


class AnalysisOut(BaseModel):
    id: int
    project_id: int
    kind: str
    hash: str
    status: Literal["running", "completed", "failed"]
    round: int
    timeout: int = Field(description="Seconds each round waits for the sites asked.")
    sites: dict[str, str] = Field(
        description="Per site: waiting (not approved yet, or not polled), released round N, "
        "refused with the site's reason, or silent (no answer within the timeout)."
    )
    result: dict[str, Any] | None
    error: str | None
    spec: dict[str, Any]


class AnalysisReleaseIn(BaseModel):
    round: int = Field(ge=0, le=1000)
    release: dict[str, Any] | None = Field(
        None, description="The site's aggregates for this round (flip.stats.federated)."
    )
    refused: one_line_text(2000, NO_REASON) | None = Field(
        None,
        description="Why the site refuses: shown as one line of text (each run of whitespace "
        "or control characters one space).",
    )

    @model_validator(mode="after")
    def _release_or_refusal(self) -> AnalysisReleaseIn:
        """One answer: a release and a refusal together would be combined yet shown refused."""
        if (self.release is None) == (self.refused is None):
            raise ValueError("give a release or a refusal (not both)")
        return self


#: A count a site released: the count, or "<k" where it was between 1 and k - 1.
ReleasedCount = int | Annotated[str, Field(pattern=r"^<[0-9]{1,10}$")]
Label = Annotated[str, Field(max_length=200)]


class ReleasedFraction(BaseModel):
    """A share a site released: its rows, the part (None where withheld: the rest was a
    small count), and the share (None where withheld)."""

    model_config = ConfigDict(extra="allow")
    rows: ReleasedCount
    part: ReleasedCount | None
    share: float | None = Field(ge=0, le=1)


class ReleasedCheck(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: Label
    category: Label
    table: Label
    failed: ReleasedCount | None
    checked: ReleasedCount
    status: Label


class ReleasedUnits(ReleasedFraction):
    by_concept: list[dict[str, Any]] = Field(default_factory=list, max_length=100_000)


class QualityReport(BaseModel):
    """A site's data-quality aggregates as `flip.data.validate.released` makes them: each part
    of the shape the network page reads (other keys are kept as sent)."""

    model_config = ConfigDict(extra="allow")
    min_cell: int = Field(ge=1, le=MAX_INT)
    checks: list[ReleasedCheck] = Field(max_length=10_000)
    quarantine: dict[Label, ReleasedCount] = Field(max_length=10_000)
    completeness: dict[Label, ReleasedFraction] = Field(max_length=10_000)
    unmapped: dict[Label, ReleasedFraction] = Field(max_length=10_000)
    units: ReleasedUnits


class QualityIn(BaseModel):
    report: QualityReport = Field(
        description="A site's data-quality aggregates (flip.data.validate.released)."
    )
