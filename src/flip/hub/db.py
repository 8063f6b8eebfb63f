"""The hub's tables (SQLAlchemy Core): users, sites, projects, tasks, queries, runs, audit."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    false,
)

from flip.private_files import private_database

metadata = MetaData()


def now() -> datetime:
    """The current UTC time, naive, as every hub table stores it."""
    return datetime.now(UTC).replace(tzinfo=None)


def name_key(name: str) -> str:
    """What makes two user names the same: their letters, whatever their case."""
    return name.lower()


def _name_key_of_row(context) -> str:
    return name_key(context.get_current_parameters()["name"])


def _created() -> Column:
    return Column("created_at", DateTime, nullable=False, default=now)


users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    #: The name lowered (`name_key`, set on insert): no two users' names differ only by case.
    #: None for a twin kept from before 0023 (the oldest of its twins holds the key).
    Column("name_key", String(100), default=_name_key_of_row),
    Column("role", String(20), nullable=False),
    Column("password_hash", String(200)),
    Column("site_id", ForeignKey("sites.id", name="fk_users_site_id")),
    _created(),
    #: When an admin revoked the user's access: no token, session or login works until restored.
    Column("revoked_at", DateTime),
    #: The TOTP secret (base32); sign-in asks for a code once `totp_enabled_at` is set.
    Column("totp_secret", String(64)),
    Column("totp_enabled_at", DateTime),
    #: The last TOTP time step accepted, so no code works twice.
    Column("totp_last_step", Integer),
    #: JSON list of the SHA-256 of each unused one-time recovery code.
    Column("recovery_codes", Text),
    #: The password is one an admin's web page made: the user must choose their own.
    Column("password_one_time", Boolean, nullable=False, default=False, server_default=false()),
    #: When a one-time password stops working (None for a password the user chose).
    Column("password_expires_at", DateTime),
    UniqueConstraint("name_key", name="uq_users_name_key"),
)

#: Users' named API tokens (a laptop, a CI job), each stored as its hash; revoking one
#: deletes its row. `prefix` (`flip_u_` and five more) and the dates name it on the account
#: page; tokens carried over from before 0020 may lack them.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", ForeignKey("users.id", name="fk_api_tokens_user_id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16)),
    Column("created_at", DateTime),
    Column("expires_at", DateTime),
    #: When the token last opened a request, to the hour (`auth.LAST_USED_GRAIN`).
    Column("last_used_at", DateTime),
    UniqueConstraint("user_id", "name", name="uq_api_tokens_user_name"),
)

#: Sessions opened by password login: a token (hashed) that expires within hours.
sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", ForeignKey("users.id"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("expires_at", DateTime, nullable=False),
    _created(),
    #: Opened by the web app's sign-in (password and TOTP): only these open the web app.
    Column("web", Boolean, nullable=False, default=False, server_default=false()),
)

sites = Table(
    "sites",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("enrolment_hash", String(64), unique=True),
    #: When the enrolment token stops working.
    Column("enrolment_expires_at", DateTime),
    Column("credential_hash", String(64), unique=True),
    Column("status", String(20), nullable=False),
    _created(),
    Column("signing_key", Text),
)

#: The signed heads of each site's ledger, as its agent showed them; `problem` says how a
#: head failed to extend the one before (its ledger truncated or rewritten).
site_heads = Table(
    "site_heads",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("site_id", ForeignKey("sites.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("signature", Text, nullable=False),
    Column("problem", Text),
    Column("received_at", DateTime, nullable=False, default=now),
    Index("ix_site_heads_site", "site_id", "id"),
)

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("owner_id", ForeignKey("users.id"), nullable=False),
    _created(),
)

project_members = Table(
    "project_members",
    metadata,
    Column("project_id", ForeignKey("projects.id"), primary_key=True),
    Column("user_id", ForeignKey("users.id"), primary_key=True),
    _created(),
)

project_sites = Table(
    "project_sites",
    metadata,
    Column("project_id", ForeignKey("projects.id"), primary_key=True),
    Column("site_id", ForeignKey("sites.id"), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("updated_at", DateTime, nullable=False, default=now),
    Index("ix_project_sites_site", "site_id", "project_id"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", ForeignKey("projects.id"), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("spec", Text, nullable=False),
    _created(),
    UniqueConstraint("project_id", "hash"),
)

task_decisions = Table(
    "task_decisions",
    metadata,
    Column("task_id", ForeignKey("tasks.id"), primary_key=True),
    Column("site_id", ForeignKey("sites.id"), primary_key=True),
    Column("decision", String(10), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("decided_at", DateTime, nullable=False, default=now),
    Index("ix_task_decisions_site", "site_id", "task_id"),
)

queries = Table(
    "queries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", ForeignKey("projects.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("definition", Text, nullable=False),
    Column("created_by", ForeignKey("users.id"), nullable=False),
    _created(),
    Index("ix_queries_project", "project_id"),
)

query_results = Table(
    "query_results",
    metadata,
    Column("query_id", ForeignKey("queries.id"), primary_key=True),
    Column("site_id", ForeignKey("sites.id"), primary_key=True),
    Column("count", Integer),
    Column("suppressed", Boolean, nullable=False),
    Column("threshold", Integer, nullable=False),
    Column("error", Text),
    Column("histograms", Text, nullable=False, default="{}"),
    Column("attrition", Text, nullable=False, default="[]", server_default="[]"),
    Column("answered_at", DateTime, nullable=False, default=now),
    Index("ix_query_results_site", "site_id", "query_id"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", ForeignKey("projects.id"), nullable=False),
    Column("task_id", ForeignKey("tasks.id"), nullable=False),
    Column("rounds", Integer, nullable=False),
    Column("strategy", String(40), nullable=False),
    Column("runtime", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("results", Text),
    _created(),
    Column("updated_at", DateTime, nullable=False, default=now),
)

run_sites = Table(
    "run_sites",
    metadata,
    Column("run_id", ForeignKey("runs.id"), primary_key=True),
    Column("site_id", ForeignKey("sites.id"), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("updated_at", DateTime, nullable=False, default=now),
    Index("ix_run_sites_site", "site_id", "run_id"),
)

#: The entries of a site's own run log that the site chose to share.
run_logs = Table(
    "run_logs",
    metadata,
    Column("run_id", ForeignKey("runs.id"), primary_key=True),
    Column("site_id", ForeignKey("sites.id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("action", String(60), nullable=False),
    Column("detail", Text, nullable=False),
)

run_rounds = Table(
    "run_rounds",
    metadata,
    Column("run_id", ForeignKey("runs.id"), primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("metrics", Text, nullable=False),
)

#: A completed run's certificate: its fields (JSON) and the hub's signature over their digests.
run_certificates = Table(
    "run_certificates",
    metadata,
    Column("run_id", ForeignKey("runs.id"), primary_key=True),
    Column("fields", Text, nullable=False),
    Column("hub_signature", Text, nullable=False),
    _created(),
)

#: Each site's countersignature of a run certificate.
certificate_signatures = Table(
    "certificate_signatures",
    metadata,
    Column("run_id", ForeignKey("runs.id"), primary_key=True),
    Column("site_id", ForeignKey("sites.id"), primary_key=True),
    Column("signature", Text, nullable=False),
    _created(),
)

#: Hub-wide settings an admin sets on the web (the maintenance banner), by key.
hub_settings = Table(
    "hub_settings",
    metadata,
    Column("key", String(60), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_by", String(120), nullable=False),
    Column("updated_at", DateTime, nullable=False, default=now),
)

#: Requests for an account from the public form, until an admin approves or declines them.
access_requests = Table(
    "access_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("email", String(200), nullable=False),
    Column("organisation", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(20), nullable=False),
    _created(),
    Column("decided_by", String(120)),
    Column("decided_at", DateTime),
    Column("note", Text, nullable=False, default=""),
    Index("ix_access_requests_status", "status", "id"),
)

#: Federated analyses (Table 1, survival, regression, harmonisation) a researcher asked a
#: project's sites for: the spec each site approves by its hash, the combiner's state
#: between rounds, and the combined result.
analyses = Table(
    "analyses",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", ForeignKey("projects.id"), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("spec", Text, nullable=False),
    Column("created_by", ForeignKey("users.id"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("round", Integer, nullable=False),
    Column("state", Text, nullable=False),
    Column("result", Text),
    Column("error", Text),
    _created(),
    #: When the current round began (or the analysis last changed).
    Column("updated_at", DateTime, nullable=False, default=now),
    #: Seconds each round waits for the sites asked; then the silent ones are left out.
    Column("timeout", Integer, nullable=False, server_default="86400"),
    Index("ix_analyses_project", "project_id", "id"),
)

#: Each site's release (aggregates only) for one round of an analysis, or its refusal.
analysis_releases = Table(
    "analysis_releases",
    metadata,
    Column("analysis_id", ForeignKey("analyses.id"), primary_key=True),
    Column("site_id", ForeignKey("sites.id"), primary_key=True),
    Column("round", Integer, primary_key=True, autoincrement=False),
    Column("body", Text),
    Column("refused", Text),
    Column("released_at", DateTime, nullable=False, default=now),
)

#: Each site's latest data-quality aggregates, as its policy released them.
site_quality = Table(
    "site_quality",
    metadata,
    Column("site_id", ForeignKey("sites.id"), primary_key=True),
    Column("report", Text, nullable=False),
    Column("released_at", DateTime, nullable=False, default=now),
)

#: The login throttle's counts (flip.hub.login_throttle): one row per counted password attempt
#: and what it counts against (an account, an account at an address known to it, an address),
#: at Unix seconds; kept here so a restart forgets none and every hub process counts together.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(300), nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_login_failures_key_at", "key", "at"),
    Index("ix_login_failures_at", "at"),
)

#: The addresses each account signed in from (attempts from there keep a count of their own).
login_addresses = Table(
    "login_addresses",
    metadata,
    Column("account", String(100), primary_key=True),
    Column("address", String(100), primary_key=True),
    Column("at", Float, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("actor", String(120), nullable=False),
    Column("action", String(60), nullable=False),
    Column("target", String(120), nullable=False),
    Column("detail", Text, nullable=False),
    Column("hash", String(64), nullable=False),
)


def connect(url: str) -> Engine:
    """An engine on the hub database, migrated to the newest schema; a SQLite file is
    private to this user."""
    private_database(url)
    connect_args = {"check_same_thread": False, "timeout": 30} if url.startswith("sqlite") else {}
    # As many connections as the worker threads that may use them at once.
    engine = create_engine(url, connect_args=connect_args, pool_size=20, max_overflow=20)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    from flip.hub.migrate import upgrade

    upgrade(engine)
    return engine


def _sqlite_begin(conn: Connection) -> None:
    """Writers lock at BEGIN (no upgrade deadlocks); readers' transactions stay deferred."""
    read_only = conn.get_execution_options().get("flip_read_only", False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
