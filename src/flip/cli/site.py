"""`flip site …`: the site's own commands; nothing here talks to the hub."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from flip.cli.console import app as console_app
from flip.cli.errors import one_line_errors
from flip.cli.notes import app as notes_app
from flip.cli.optout import app as optout_app
from flip.cli.site_models import app as models_app
from flip.problems import as_text

if TYPE_CHECKING:
    from flip.config import IngestSettings
    from flip.data.sources.identity import PersonIdentity

app = typer.Typer(
    help="Site commands: create a store, ingest sources, count cohorts.", no_args_is_help=True
)

StoreOption = Annotated[
    str,
    typer.Option(
        "--store", help="DuckDB file path, or a SQLAlchemy URL (sqlite://, postgresql+psycopg://)."
    ),
]


def _existing(store: str):
    """Open a store that must already exist at FLIP's schema version, for reading."""
    from flip.data.cdm.store import open_store

    if "://" not in store and not Path(store).exists():
        raise FileNotFoundError(
            f"no store at {store}: create it with `flip site init --store {store}`"
        )
    s = open_store(store, read_only=store.endswith(".duckdb"))
    s.check()
    return s


class SourceKind(StrEnum):
    fhir = "fhir"
    hl7v2 = "hl7v2"
    csv = "csv"
    sql = "sql"
    omop = "omop"
    dicom = "dicom"


class FeedKind(StrEnum):
    hl7v2 = "hl7v2"


class DateOrder(StrEnum):
    dmy = "dmy"
    mdy = "mdy"


DATE_ORDER_HELP = (
    "How to read day- or month-first dates such as 01/02/2020: dmy (1 February, as in "
    "Europe) or mdy (2 January, as in the USA). Default: none; such dates are then never "
    "guessed but counted as `omop.date_order_unknown`. Year-first and YYYYMMDD dates need none."
)


@app.command()
def init(store: StoreOption = "store.duckdb") -> None:
    """Create the OMOP CDM v5.4 and provenance tables, with the starter vocabulary.

    Example: flip site init --store store.duckdb
    Example: flip site init --store postgresql+psycopg://flip@db/site
    """
    from flip.data.cdm.store import open_store

    with one_line_errors():
        s = open_store(store)
        s.create()
        s.close()
    typer.echo(f"store ready: {store}")


@app.command()
def ingest(
    kind: Annotated[
        SourceKind,
        typer.Argument(
            help="fhir: Bundles/resources/NDJSON; hl7v2: ADT/ORU files; csv: a folder of CSV or "
            "Parquet files with its mapping; sql: a mapping whose tables are queries (--url); "
            "omop: an OMOP CDM 5.3/5.4 export folder (CSV or Parquet files), or an OMOP "
            "database given by --url; "
            "dicom: DICOM files (a folder searched recursively), or a PACS's DICOMweb root "
            "given by --url, after their patients."
        ),
    ],
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A file or folder (sql: the mapping file; none with --url for omop, dicom).",
            exists=True,
        ),
    ] = None,
    store: StoreOption = "store.duckdb",
    mapping: Annotated[
        Path | None, typer.Option(help="Mapping YAML for csv (default: PATH/mapping.yaml).")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            help="sql/omop: the source database, any SQLAlchemy URL; fhir: the server's base "
            "URL; dicom: the DICOMweb root (e.g. http://pacs:8042/dicom-web)."
        ),
    ] = None,
    schema: Annotated[
        str | None, typer.Option(help="omop --url: the schema holding the CDM.")
    ] = None,
    bulk: Annotated[
        bool, typer.Option(help="fhir --url: use Bulk Data $export instead of paged search.")
    ] = False,
    full: Annotated[
        bool, typer.Option(help="fhir --url: fetch everything, not only what changed since.")
    ] = False,
    system: Annotated[
        str | None,
        typer.Option(
            help="Name of the source system, for provenance and re-runs: a record is the "
            "same record only under the same name. Default: KIND:FILE-OR-FOLDER-NAME "
            "(hl7v2: `hl7v2` for every file, as the listener)."
        ),
    ] = None,
    person_identifier: Annotated[
        str | None,
        typer.Option(
            help="The identifier system that decides who a patient is (e.g. "
            "https://fhir.nhs.uk/Id/nhs-number): patients with the same value are one person "
            "across resources, sources and kinds (FHIR Patient.identifier, HL7 v2 PID-3, a "
            "mapping's person `identifier` column). Default: site.yaml's person_identifier."
        ),
    ] = None,
    site_config: Annotated[
        Path | None,
        typer.Option(
            "--site-config",
            help="The site's site.yaml, for its declared `code_systems` and "
            "`person_identifier` (default: ./site.yaml when there is one).",
        ),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option(
            help="PATH (or --url with --full) is a full re-export of the source system: "
            "remove what earlier runs of it loaded and this export no longer holds. Off by "
            "default; refused for HL7 v2 without --system and for incremental FHIR pulls.",
        ),
    ] = False,
    date_order: Annotated[
        DateOrder | None,
        typer.Option(help=f"omop: {DATE_ORDER_HELP} Default: site.yaml's date_order."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Ingest a source into the store: map codes, validate, quarantine bad records.

    Re-running adds nothing that is already there; a changed record replaces its rows.
    Exits non-zero when no record could be read, or when the source failed part-way.

    Example: flip site ingest csv /tmp/flip-tour/north-export --store /tmp/flip-tour/north.duckdb
    Example: flip site ingest fhir --url https://ehr.example.org/fhir --bulk --store store.duckdb
    """
    reading = _read_fhir_ahead(kind, path, url, person_identifier, site_config)
    from flip.data.cdm.store import StoreError, forgo_numpy, forgo_pandas, open_store

    if reading is not None and _read_elsewhere(reading):
        forgo_numpy()  # see there: only mapping and writing happen here
    from flip.data.ingest import ingest_fhir_server, ingest_path

    if path is None and not (kind in (SourceKind.omop, SourceKind.fhir, SourceKind.dicom) and url):
        raise typer.BadParameter(
            "give PATH (or, for fhir, omop and dicom, --url)", param_hint="PATH"
        )
    console = Console(stderr=True)
    errors: tuple[type[Exception], ...] = ()
    if kind in (SourceKind.csv, SourceKind.sql):  # each source kind imports only its reader
        from flip.data.sources.tabular import MappingError, SourceReadError

        errors += (MappingError, SourceReadError)
    if url:
        import httpx

        errors += (httpx.HTTPError,)
    if kind is SourceKind.fhir and url:
        from flip.data.sources.fhir_rest import FhirServerError

        errors += (FhirServerError,)
    if kind is SourceKind.dicom:  # pydicom costs a fifth of a second to import: only for DICOM
        from flip.data.sources.dicomweb import DicomWebError

        errors += (DicomWebError,)
    forgo_pandas()  # see there: a second of start-up
    with one_line_errors(*errors):
        settings = _site_settings(site_config)
        identity = _identity(person_identifier, settings)
        code_systems = settings.code_systems if settings else {}
        order = date_order.value if date_order else settings.date_order if settings else None
        s = open_store(store)
        try:
            s.check()  # a store at FLIP's version needs no create(), a tenth of a second
        except StoreError:
            s.create()
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        label = str(path or url)
        with Progress(*columns, console=console, disable=as_json) as bar:
            task = bar.add_task(f"ingesting {label}", total=None)

            def advance(n: int) -> None:
                done = bar.tasks[0].completed + n
                bar.update(
                    task, completed=done, description=f"ingesting {label}: {done:.0f} records"
                )

            if kind is SourceKind.fhir and url:
                report = ingest_fhir_server(
                    s,
                    url,
                    bulk=bulk,
                    incremental=not full,
                    source_system=system,
                    progress=advance,
                    code_systems=code_systems,
                    person_identifier=identity,
                    prune=prune,
                )
            else:
                report = ingest_path(
                    s,
                    kind.value,
                    path,
                    mapping=mapping,
                    url=url,
                    schema_name=schema,
                    source_system=system,
                    progress=advance,
                    code_systems=code_systems,
                    person_identifier=identity,
                    reading=reading,
                    prune=prune,
                    date_order=order,
                )
        s.close()
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        _print_report(report)
    if report.read == 0:
        typer.echo(f"error: nothing read from {url or path}", err=True)
        raise typer.Exit(1)
    if report.loaded + report.unchanged + report.withdrawn == 0:  # a correction withdraws
        typer.echo(
            f"error: nothing loaded: {report.quarantined} quarantined, {report.skipped} skipped",
            err=True,
        )
        raise typer.Exit(1)


def _ingest_settings(site_config: Path | None) -> IngestSettings:
    """What site.yaml says about ingests: the one given, else ./site.yaml if there is one."""
    from flip.config import IngestSettings

    path = site_config or Path("site.yaml")
    if not path.is_file():
        if site_config is None:
            return IngestSettings()
        raise typer.BadParameter(f"{path} is not a file", param_hint="--site-config")
    return IngestSettings.load(path)


def _site_settings(site_config: Path | None) -> IngestSettings | None:
    """`_ingest_settings`, or None when no site.yaml is named and none is here: the settings
    code (pydantic and YAML, a tenth of a second to import) is then never loaded."""
    if site_config is None and not Path("site.yaml").is_file():
        return None
    return _ingest_settings(site_config)


def _read_fhir_ahead(kind, path, url, person_identifier, site_config):
    """For FHIR files, start reading them in a child process before the store stack is
    imported, so that the two overlap (reading and validating is most of a FHIR ingest).

    None when the source is not FHIR files, or when site.yaml cannot be read (the error
    is reported where it is read again, with the others).
    """
    if kind is not SourceKind.fhir or path is None or url:
        return None
    try:
        identity = _identity(person_identifier, _site_settings(site_config))
    except (OSError, ValueError):
        return None
    from flip.data.sources.fhir_ahead import read_path_ahead

    return read_path_ahead(path, identity)


def _read_elsewhere(reading) -> bool:
    """Whether FHIR files being read (`_read_fhir_ahead`) are read in a child process."""
    from flip.data.sources.fhir_ahead import read_elsewhere

    return read_elsewhere(reading)


def _identity(system: str | None, settings: IngestSettings | None) -> PersonIdentity | None:
    """The site's person identifier: the `--person-identifier` system, else site.yaml's
    (`settings`, None without one)."""
    from flip.data.sources.identity import PersonIdentity

    if system:
        return PersonIdentity(system)
    found = settings.person_identifier if settings is not None else None
    if found is None:
        return None
    return PersonIdentity(found.system, found.hl7v2_authority, found.hl7v2_type)


#: The counters of an ingest run, as the summaries show them.
RUN_COUNTS = ("read", "loaded", "unchanged", "quarantined", "skipped", "withdrawn")


def _print_report(report) -> None:
    console = Console()
    summary = Table(title="Ingest")
    for column in RUN_COUNTS:
        summary.add_column(column, justify="right")
    summary.add_row(*(str(getattr(report, column)) for column in RUN_COUNTS))
    console.print(summary)
    if report.rows:
        rows = Table(title="Rows written per CDM table")
        rows.add_column("table")
        rows.add_column("rows", justify="right")
        for table, n in sorted(report.rows.items()):
            rows.add_row(table, str(n))
        console.print(rows)
    for title, counter, key, unit in (
        ("Quarantined by rule", report.rules, "rule", "records"),
        ("Skipped by rule", report.skipped_rules, "rule", "records"),
        ("Warnings (optional fields nulled, conflicts)", report.warnings, "rule", "records"),
        ("Unmapped codes", report.unmapped, "system|code", "records"),
        (
            f"Pruned: {report.pruned} records gone from the source",
            report.pruned_rows,
            "table",
            "rows",
        ),
        (
            f"Withdrawn: {report.withdrawn} records re-sent as not facts",
            report.withdrawn_rows,
            "table",
            "rows",
        ),
    ):
        if counter:
            t = Table(title=title)
            t.add_column(key)
            t.add_column(unit, justify="right")
            for key, n in counter.most_common():
                t.add_row(key, str(n))
            console.print(t)
    if report.conflicts:
        t = Table(title="Conflicting demographics (the person keeps what was loaded first)")
        t.add_column("record")
        for line in report.conflicts[:20]:
            t.add_row(line)
        console.print(t)
    if report.unread:
        t = Table(title="Not read")
        t.add_column("file or table")
        t.add_column("why")
        for where, why in sorted(report.unread.items()):
            t.add_row(where, why)
        console.print(t)


@app.command()
def count(
    cohort: Annotated[
        Path,
        typer.Argument(
            help="A cohort definition: FLIP's JSON or Circe JSON from ATLAS.", exists=True
        ),
    ],
    store: StoreOption = "store.duckdb",
    min_cell: Annotated[int, typer.Option(help="Suppress counts between 1 and this.")] = 10,
) -> None:
    """Count a cohort in the store, as the site would release it (small counts suppressed).

    With `"histograms": ["age", "sex"]` in the definition, also the released bins.

    Example: flip site count /tmp/flip-tour/t2d.json --store /tmp/flip-tour/north.duckdb
    """
    from flip.data.cohort.circe.definition import load_definition_file
    from flip.data.cohort.release import release

    with one_line_errors():
        definition = load_definition_file(cohort)
        s = _existing(store)
        released = release(s, definition, min_cell)
        s.close()
    shown = f"<{released.threshold} (suppressed)" if released.suppressed else str(released.count)
    typer.echo(f"{as_text(definition.name)}: {shown}")  # a researcher's file may name it
    for by, bins in released.histograms.items():
        cells = ", ".join(f"{k}: {'suppressed' if v is None else v}" for k, v in bins.items())
        typer.echo(f"  by {as_text(by)}: {as_text(cells)}")


@app.command("export-circe")
def export_circe(
    cohort: Annotated[Path, typer.Argument(help="A FLIP cohort definition (JSON).", exists=True)],
) -> None:
    """Print a FLIP cohort definition as an OHDSI Circe expression (for ATLAS), where Circe
    can say the same thing; otherwise one line naming what it cannot.

    Example: flip site export-circe /tmp/flip-tour/t2d.json
    """
    import json

    from pydantic import ValidationError

    from flip.data.cohort import CohortDefinition
    from flip.data.cohort.circe.export import to_circe
    from flip.problems import first_problem, read_json

    with one_line_errors():
        try:
            definition = CohortDefinition.model_validate(read_json(cohort))
        except ValidationError as exc:
            raise ValueError(f"{cohort}: {first_problem(exc)}") from None
        expression = to_circe(definition)
    typer.echo(json.dumps(expression, indent=2))


@app.command()
def listen(
    kind: Annotated[FeedKind, typer.Argument(help="The feed's protocol.")],
    store: StoreOption = "store.duckdb",
    host: Annotated[
        str, typer.Option(help="Address to listen on (the site's own network).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="TCP port of the MLLP listener (1-65535).")
    ] = 2575,
    system: Annotated[
        str,
        typer.Option(help="Name of the feed, for provenance; the same as its files' ingest."),
    ] = "hl7v2",
    site_config: Annotated[
        Path | None,
        typer.Option(
            "--site-config",
            help="The site's site.yaml, for its declared `code_systems` and "
            "`person_identifier` (default: ./site.yaml when there is one).",
        ),
    ] = None,
) -> None:
    """Receive HL7 v2 over MLLP: store each message, answer AA, or AE with the reasons.

    The store is open only while a message is written, so reports, counts and other
    ingests work meanwhile. SIGTERM or Ctrl-C ends the run and prints its counts.

    Example: flip site listen hl7v2 --port 2575 --store store.duckdb --site-config site.yaml
    """
    from flip.data.cdm.store import open_store
    from flip.data.sources.mllp import listen as serve

    with one_line_errors():
        settings = _ingest_settings(site_config)
        s = open_store(store)
        s.create()
        s.close()
        typer.echo(f"listening for {kind.value} on {host}:{port} (Ctrl-C to stop)", err=True)
        report = serve(
            store,
            system,
            host,
            port,
            code_systems=settings.code_systems,
            identity=_identity(None, settings),
        )
    typer.echo(json.dumps(report.as_dict()))


vocab_app = typer.Typer(
    help="Vocabularies: load Athena or SNOMED CT releases, explain mappings.", no_args_is_help=True
)
app.add_typer(vocab_app, name="vocab")
app.add_typer(optout_app, name="optout")
app.add_typer(console_app, name="console")
app.add_typer(notes_app, name="notes")
app.add_typer(models_app, name="models")


class VocabularyFormat(StrEnum):
    athena = "athena"
    snomed = "snomed"


@vocab_app.command("load")
def vocab_load(
    kind: Annotated[
        VocabularyFormat,
        typer.Argument(help="athena: an Athena download; snomed: an RF2 snapshot."),
    ],
    folder: Annotated[
        Path, typer.Argument(help="The unzipped release.", exists=True, file_okay=False)
    ],
    store: StoreOption = "store.duckdb",
    date_order: Annotated[
        DateOrder | None, typer.Option(help=f"athena: {DATE_ORDER_HELP.split('; such')[0]}.")
    ] = None,
) -> None:
    """Load a vocabulary release the site licenses; reloading replaces rows, never duplicates.

    A day- or month-first date without --date-order stops the load, naming its file and line.

    Example: flip site vocab load athena ~/athena-download --store store.duckdb
    """
    from flip.data.cdm.store import open_store
    from flip.data.terminology.athena import load_athena
    from flip.data.terminology.snomed import load_rf2

    with one_line_errors():
        s = open_store(store)
        s.create()
        if kind is VocabularyFormat.athena:
            counts = load_athena(s, folder, date_order.value if date_order else None)
        else:
            counts = load_rf2(s, folder)
        s.close()
    for table, n in counts.items():
        typer.echo(f"{table}: {n} rows")


@vocab_app.command("map")
def vocab_map(
    code: Annotated[str, typer.Argument(help="The source code, e.g. I21.9 or 8480-6.")],
    system: Annotated[
        str, typer.Option(help="Code system URI, e.g. http://hl7.org/fhir/sid/icd-10.")
    ],
    store: StoreOption = "store.duckdb",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show how a code maps to a standard concept, into which CDM table, and why.

    Example: flip site vocab map I21.9 --system http://hl7.org/fhir/sid/icd-10 --store store.duckdb
    """
    from flip.data.terminology.explain import explain

    with one_line_errors():
        s = _existing(store)
        result = explain(s, system, code)
        s.close()
    if as_json:
        typer.echo(json.dumps(result))
        return
    source, target = result["source_concept"], result["standard_concept"]
    typer.echo(f"{system} {code} ({result['vocabulary_id'] or 'unknown system'})")
    if source:
        typer.echo(f"  source concept  {source['concept_id']} {source['concept_name']}")
    if target:
        standard = f"{target['concept_id']} {target['concept_name']} [{target['domain_id']}]"
        typer.echo(f"  standard        {standard}")
        typer.echo(f"  lands in        {result['cdm_table'] or '(no event table for this domain)'}")
    else:
        typer.echo("  standard        none: rows keep the source value with concept_id 0")
    typer.echo(f"  why             {result['reason']}")
    if not target:
        raise typer.Exit(1)


@app.command()
def report(
    store: StoreOption = "store.duckdb",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML file.")
    ] = None,
) -> None:
    """Rows per CDM table, quality checks, counts per source, quarantine, unmapped codes, units.

    `--html FILE` adds unit coverage and value distributions with charts (self-contained).

    Example: flip site report --store /tmp/flip-tour/north.duckdb --html /tmp/flip-tour/report.html
    """
    from flip.data.validate.report import build_report, render_html
    from flip.private_files import write_private

    with one_line_errors():
        s = _existing(store)
        data = build_report(s)
        s.close()
        if html_path is not None:
            write_private(html_path, render_html(data).encode("utf-8"))
    if as_json:
        typer.echo(json.dumps(data, default=str))
        return
    _print_site_report(data)
    if html_path is not None:
        typer.echo(f"wrote {html_path}")


def _print_site_report(data: dict) -> None:
    console = Console()
    tables = Table(title="Rows per CDM table")
    tables.add_column("table")
    tables.add_column("rows", justify="right")
    for name, n in data["tables"].items():
        if n:
            tables.add_row(name, str(n))
    console.print(tables)
    checks = Table(title="Quality checks (OHDSI DQD style)")
    for column in ("check", "failed", "checked", "status"):
        checks.add_column(column, justify="left" if column == "check" else "right")
    for c in data["checks"]:
        colour = "green" if c["status"] == "PASS" else "red"
        checks.add_row(c["name"], str(c["failed"]), str(c["total"]), f"[{colour}]{c['status']}")
    console.print(checks)
    if data["quarantine"]["by_rule"]:
        rules = Table(title=f"Quarantine ({data['quarantine']['total']} records)")
        rules.add_column("rule")
        rules.add_column("records", justify="right")
        for rule, n in sorted(data["quarantine"]["by_rule"].items()):
            rules.add_row(rule, str(n))
        console.print(rules)
    if data["unmapped"]:
        codes = Table(title="Unmapped codes (concept_id 0)")
        for column in ("table", "code system", "source value", "rows"):
            codes.add_column(column, justify="right" if column == "rows" else "left")
        for u in data["unmapped"]:
            codes.add_row(u["table"], u["code_system"], str(u["source_value"]), str(u["rows"]))
        console.print(codes)
    if data["sources"]:
        sources = Table(title="Counts per source (latest run)")
        sources.add_column("source")
        for column in RUN_COUNTS:
            sources.add_column(column, justify="right")
        sources.add_column("skipped / warnings by rule")
        for src in data["sources"]:
            rules = {**src["skipped_by_rule"], **src["warnings_by_rule"]}
            counts = (str(src[c]) for c in RUN_COUNTS)
            why = ", ".join(f"{rule} {n}" for rule, n in sorted(rules.items()))
            sources.add_row(src["source"], *counts, why)
        console.print(sources)
    units = data["unit_coverage"]
    if units["numeric"]:
        console.print(
            f"Unit coverage: {units['with_unit']} of {units['numeric']} numeric measurement rows "
            f"have a unit concept; {sum(d['outliers'] for d in data['distributions'])} values "
            "lie beyond Tukey's fences (see --html or --json)."
        )


DataOption = Annotated[
    Path | None, typer.Option("--data", help="A CSV file (models from flip fl run).")
]
ModelStoreOption = Annotated[
    str | None, typer.Option("--store", help="The site's store (task models).")
]
RegistryOption = Annotated[
    Path | None, typer.Option(help="Model registry (default: FLIP_REGISTRY or ~/.flip/models).")
]


CustomSiteOption = Annotated[
    Path | None,
    typer.Option(
        "--site-config",
        help="The site's site.yaml: needed for a custom task's model, whose code runs only "
        "in the sandbox, within the site's limits, once the site approved the task; and for "
        "an adapter model, whose pretrained encoders load from the site's registered copies.",
    ),
]


def _sandbox(record, site_config: Path | None):
    """The sandbox limits a custom task's model is scored within (None for other models),
    once the site's ledger shows it approved the task."""
    from flip.data.ledger import Ledger
    from flip.fl.client import site_limits
    from flip.fl.registry import RegistryError

    if record.lineage["task"] != "custom":
        return None
    if site_config is None:
        raise RegistryError(
            f"{record.id} is a custom task's model: give --site-config to score it in the "
            "site's sandbox"
        )
    site = _site_config(site_config)
    with Ledger(site.ledger) as ledger:
        approved = ledger.approved_for_any_project(record.lineage["task_hash"])
    if not approved:
        raise RegistryError(
            f"{record.id}: this site has not approved its custom task "
            f"{record.lineage['task_hash'][:12]}: its code does not run here"
        )
    return site_limits(site)


def _bases(record, site_config: Path | None):
    """The site's local paths of an adapter model's pretrained encoders, each resolved in its
    registry by the task's name and SHA-256 (None for other models, or without a site)."""
    from flip.data.ledger import Ledger
    from flip.data.pretrained import resolve
    from flip.fl.tasks.base import TaskSpec

    if site_config is None or "task_spec" not in record.lineage:
        return None
    spec = TaskSpec.model_validate(record.lineage["task_spec"])
    if not spec.adapters:
        return None
    with Ledger(_site_config(site_config).ledger) as ledger:
        return {
            a.weights.name: resolve(ledger, a.weights.name, a.weights.sha256) for a in spec.adapters
        }


def _local(
    model_id: str,
    registry: Path | None,
    data: Path | None,
    store: str | None,
    target: str | None,
    positive: str | None,
):
    from flip.fl import validation
    from flip.fl.registry import default_registry, load

    record = load(registry or default_registry(), model_id)
    if (data is None) == (store is None):
        raise typer.BadParameter("give exactly one of --data FILE.csv or --store URL")
    local = (
        validation.from_csv(record, data, target, positive)
        if data is not None
        else validation.from_store(record, store)
    )
    return record, local


@app.command()
def evaluate(
    model_id: Annotated[str, typer.Argument(help="A registered model's id.")],
    data: DataOption = None,
    store: ModelStoreOption = None,
    target: Annotated[str | None, typer.Option(help="--data: the outcome column.")] = None,
    positive: Annotated[
        str | None, typer.Option(help='--data: which rows are positive, e.g. "num>0".')
    ] = None,
    registry: RegistryOption = None,
    site_config: CustomSiteOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """External validation: a registered model on this site's own data, and feature drift.

    Example: flip site evaluate heart-3fa94c2e1b7d --data local.csv --target num --positive "num>0"
    Example: flip site evaluate mace-5y-3fa94c2e1b7d --store store.duckdb --site-config site.yaml
    """
    from flip.data.features.csvfile import DatasetError
    from flip.data.pretrained import PretrainedError
    from flip.fl import validation
    from flip.fl.registry import RegistryError

    with one_line_errors(DatasetError, RegistryError, PretrainedError):
        record, local = _local(model_id, registry, data, store, target, positive)
        result = validation.evaluate(
            record, local, _sandbox(record, site_config), _bases(record, site_config)
        )
    if as_json:
        typer.echo(json.dumps(result))
        return
    console = Console()
    auroc = "n/a" if result["auroc"] is None else f"{result['auroc']:.3f}"
    console.print(
        f"{model_id} on {result['n']} local rows: AUROC {auroc}, "
        f"accuracy {result['accuracy']:.3f}, observed {result['prevalence']:.3f} "
        f"vs mean predicted {result['mean_predicted']:.3f}"
    )
    if result["drift"]:
        table = Table(title="Feature drift (standardised mean difference from training)")
        table.add_column("feature")
        table.add_column("SMD", justify="right")
        for name, d in sorted(result["drift"].items(), key=lambda kv: -kv[1]["smd"]):
            table.add_row(name, f"[red]{d['smd']:.2f}" if d["flag"] else f"{d['smd']:.2f}")
        console.print(table)


@app.command()
def predict(
    model_id: Annotated[str, typer.Argument(help="A registered model's id.")],
    out: Annotated[Path, typer.Option(help="CSV file for the predictions (stays at the site).")],
    data: DataOption = None,
    store: ModelStoreOption = None,
    registry: RegistryOption = None,
    site_config: CustomSiteOption = None,
) -> None:
    """Score this site's rows with a registered model; predictions never leave the site.

    Example: flip site predict mace-5y-3fa94c2e1b7d --store store.duckdb --out predictions.csv
    """
    import csv

    from flip.data.features.csvfile import DatasetError
    from flip.data.pretrained import PretrainedError
    from flip.fl import validation
    from flip.fl.registry import RegistryError
    from flip.private_files import private_file

    with one_line_errors(DatasetError, RegistryError, PretrainedError):
        record, local = _local(model_id, registry, data, store, None, None)
        p = validation.predictions(
            record, local, _sandbox(record, site_config), _bases(record, site_config)
        )
        with private_file(out).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["row" if data is not None else "person_id", "probability"])
            writer.writerows(
                zip(local.data.person_ids.tolist(), [f"{v:.6f}" for v in p], strict=True)
            )
    typer.echo(f"wrote {len(p)} predictions to {out}")


SiteConfigOption = Annotated[Path, typer.Option("--site-config", help="The site's site.yaml.")]


def _site_config(path: Path):
    from flip.config import SiteConfig

    if not path.exists():
        raise FileNotFoundError(f"no site config at {path}")
    return SiteConfig.load(path)


def _hub_client(site):
    from flip.site.hub_client import HubClient

    credential = Path(site.credential)
    if site.hub is None or not credential.exists():
        return None
    return HubClient(site.hub, credential.read_text(encoding="utf-8").strip())


@app.command()
def enrol(
    hub: Annotated[str, typer.Option(help="The hub's URL.")],
    token: Annotated[str, typer.Option(help="The one-time enrolment token the hub admin gave.")],
    site_config: SiteConfigOption = Path("site.yaml"),
) -> None:
    """Exchange a one-time enrolment token for the site's credential (kept beside site.yaml, 0600),
    registering the public half of the site's signing key (made beside the ledger, 0600).

    Example: flip site enrol --hub https://hub.example.org --token ENROLMENT_TOKEN
    """
    import httpx
    import yaml

    from flip.hub.client import HubError
    from flip.private_files import write_private
    from flip.problems import read_yaml
    from flip.site.anchor import public_key
    from flip.site.hub_client import HubClient

    with one_line_errors(httpx.HTTPError, HubError):
        site = _site_config(site_config)
        credential = HubClient.enrol(hub, token, public_key(site))
        write_private(Path(site.credential), credential.encode("utf-8"))
        raw = read_yaml(site_config)
        raw["hub"] = hub
        site_config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    typer.echo(f"{site.name} enrolled with {hub}")


@app.command()
def agent(
    site_config: SiteConfigOption = Path("site.yaml"),
    interval: Annotated[float, typer.Option(help="Seconds to pause between polls.")] = 1.0,
    wait: Annotated[
        float,
        typer.Option(
            help="Long poll: the hub holds each poll up to this many seconds and answers as "
            "soon as work comes (0: plain polling every --interval).",
            min=0,
            max=60,
        ),
    ] = 20.0,
) -> None:
    """Poll the hub (outbound only): answer cohort counts, check tasks, join approved runs.

    The agent never listens on a port. It long-polls the hub, so new work is picked up
    within a moment, and backs off (up to 30 s) while the hub is unreachable.
    SIGINT or SIGTERM stops it, abandoning a long poll in progress.

    Example: flip site agent --site-config site.yaml
    """
    import signal
    import threading

    from flip.site.agent import SiteAgent

    with one_line_errors():
        site = _site_config(site_config)
        client = _hub_client(site)
        if client is None:
            raise ValueError(f"{site.name} is not enrolled: run `flip site enrol` first")
    stop = threading.Event()
    runner = SiteAgent(site, client, site_config)

    def _stop(*_: object) -> None:
        stop.set()
        if runner.waiting:
            raise _Stopped

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)
    how = f"long-polling ({wait:g} s)" if wait else f"polling every {interval:g} s"
    typer.echo(f"{site.name}: {how} {site.hub}", err=True)
    try:
        runner.run_forever(stop, interval, wait=wait)
    except _Stopped:
        pass
    finally:
        runner.close()
        client.close()


class _Stopped(Exception):
    """Raised by the agent's signal handler to abandon a long poll."""


def _decide(
    site_config: Path,
    project: int,
    task_hash: str,
    decision: str,
    by: str,
    reason: str,
    analysis: bool = False,
) -> None:
    import httpx

    from flip.data.ledger import Ledger
    from flip.site.approvals import by_person, decide

    if not re.fullmatch(r"[0-9a-f]{64}", task_hash):
        raise typer.BadParameter(
            f"{task_hash!r} is not a SHA-256: give the 64 lowercase hex characters "
            "`flip task propose` (or `flip analysis submit`) printed",
            param_hint="HASH",
        )
    if not by_person(by):
        raise typer.BadParameter(
            f"{by!r} is how the agent signs its own decisions, which a rule may replace; "
            "name the person deciding",
            param_hint="--by",
        )
    what = "analysis" if analysis else "task"
    with one_line_errors(httpx.HTTPError):
        site = _site_config(site_config)
        with Ledger(site.ledger) as ledger:
            earlier = ledger.decision(str(project), task_hash)
        if earlier is not None and (earlier["decision"], earlier["reason"]) == (decision, reason):
            typer.echo(
                f"{site.name}: {what} {task_hash[:12]}… already {decision} for project "
                f"{project} (by {earlier['decided_by']}); nothing recorded"
            )
            return
        client = None if analysis else _hub_client(site)
        decide(site, client, project, task_hash, decision, by=by, reason=reason)
        if client is not None:
            client.close()
    typer.echo(f"{site.name}: {decision} {what} {task_hash[:12]}… for project {project}")


AnalysisOption = Annotated[
    bool,
    typer.Option(
        "--analysis",
        help="HASH is an analysis's (`flip analysis submit` prints it): the decision is kept "
        "here, and the agent tells the hub when it releases or refuses the analysis.",
    ),
]


@app.command()
def approve(
    project: Annotated[int, typer.Argument(help="The project's id at the hub.")],
    task_hash: Annotated[str, typer.Argument(help="The exact task SHA-256 to allow.")],
    site_config: SiteConfigOption = Path("site.yaml"),
    by: Annotated[str, typer.Option(help="Who decides (for the audit log).")] = "site-admin",
    analysis: AnalysisOption = False,
) -> None:
    """Approve exactly this task (or analysis) for this project; nothing else runs.

    Approving it again changes nothing (no second audit entry).

    Example: flip site approve 3 5f2c…e1 (the 64 hex characters `flip task propose` printed)
    """
    _decide(site_config, project, task_hash, "approved", by, "", analysis)


@app.command()
def decline(
    project: Annotated[int, typer.Argument(help="The project's id at the hub.")],
    task_hash: Annotated[str, typer.Argument(help="The task SHA-256 to refuse.")],
    reason: Annotated[str, typer.Option(help="Why (shared with the hub).")],
    site_config: SiteConfigOption = Path("site.yaml"),
    by: Annotated[str, typer.Option(help="Who decides (for the audit log).")] = "site-admin",
    analysis: AnalysisOption = False,
) -> None:
    """Decline a task (or analysis) for a project, with a reason.

    Example: flip site decline 3 5f2c…e1 --reason "reads clinic letters" --site-config site.yaml
    """
    _decide(site_config, project, task_hash, "declined", by, reason, analysis)


@app.command()
def audit(
    site_config: SiteConfigOption = Path("site.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The site's own audit log (every query answered, run joined or refused), chain checked.

    Example: flip site audit --site-config site.yaml --json
    """
    from flip.data.ledger import Ledger

    with one_line_errors():
        ledger = Ledger(_site_config(site_config).ledger)
        entries, broken = ledger.entries(), ledger.verify()
        ledger.close()
    if as_json:
        typer.echo(json.dumps({"entries": entries, "broken_at": broken}))
    else:
        from flip.cli.hub_session import hub_console

        table = Table(title="Site audit log")
        for column in ("seq", "at", "action", "detail"):
            table.add_column(column)
        for e in as_text(entries):  # an entry may quote a researcher's or the hub's text
            table.add_row(str(e["seq"]), e["at"], e["action"], e["detail"])
        hub_console().print(table)
        typer.echo("chain intact" if broken is None else f"chain broken at entry {broken}")
    if broken is not None:
        raise typer.Exit(1)


@app.command("public-key")
def public_key(site_config: SiteConfigOption = Path("site.yaml")) -> None:
    """Print the site's public signing key (PEM): what `flip verify --site-key` trusts.

    Example: flip site public-key --site-config site.yaml > alpha.pub
    """
    from flip.site.anchor import public_key as site_public_key

    with one_line_errors():
        typer.echo(site_public_key(_site_config(site_config)), nl=False)


@app.command("trust-hub-key")
def trust_hub_key(
    key_file: Annotated[
        Path,
        typer.Argument(help="The hub's new public key (PEM), from `flip hub rotate-key`."),
    ],
    site_config: SiteConfigOption = Path("site.yaml"),
) -> None:
    """Trust the hub's new signing key after its operator rotated it (compare the key with
    them over another channel first); audited in the ledger as hub.key.trust.

    Example: flip site trust-hub-key hub-new.pub --site-config site.yaml
    """
    from flip.site.anchor import trust_hub_key as trust

    with one_line_errors():
        digest = trust(_site_config(site_config), key_file.read_text(encoding="ascii"))
    typer.echo(f"the hub's key {digest[:16]}… is trusted from now on")


@app.command()
def verify(
    site_config: SiteConfigOption = Path("site.yaml"),
    offline: Annotated[
        bool, typer.Option(help="Check the ledger only; do not ask the hub about its heads.")
    ] = False,
) -> None:
    """Check the ledger's chain and approvals, and that the hub's audit still holds each signed
    head of it this site kept (truncated or rewritten shows); exit 1 naming what broke.

    Example: flip site verify --site-config site.yaml
    """
    import httpx

    from flip.site.anchor import verify as verify_anchors

    with one_line_errors(httpx.HTTPError):
        site = _site_config(site_config)
        client = None if offline else _hub_client(site)
        try:
            problems = verify_anchors(site, client)
        finally:
            if client is not None:
                client.close()
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{site.name}: ledger intact" + ("" if client is None else "; hub heads held"))


@app.command()
def train(
    local: Annotated[
        bool, typer.Option("--local", help="Train on this site alone (no hub, no network).")
    ],
    task: Annotated[
        str,
        typer.Option(
            help="A built-in task (mace-5y: coded features; mace-5y-notes: clinic letters "
            "alone; mace-5y-xray: the chest radiograph alone; mace-5y-multimodal: late fusion "
            "of all three) or a task spec JSON file."
        ),
    ] = "mace-5y",
    site_config: SiteConfigOption = Path("site.yaml"),
    rounds: Annotated[
        int, typer.Option(help="Epoch blocks: rounds x the task's local epochs.")
    ] = 10,
    save: Annotated[str | None, typer.Option(help="Register the model under this name.")] = None,
    registry: RegistryOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Local-only: train a task on this site's own store; the same task can federate later.

    Example: flip site train --local --site-config site.yaml --task mace-5y --save mace-5y-north
    """
    from flip.data.ledger import Ledger
    from flip.data.pretrained import resolve
    from flip.fl.client import site_device, site_limits
    from flip.fl.registry import default_registry, register
    from flip.fl.runtime.local import fit
    from flip.fl.tasks import BUILT_IN, outcomes, task_hash
    from flip.fl.tasks.base import TaskSpec, load_splits
    from flip.fl.tasks.runner import evaluate_task

    if not local:
        raise typer.BadParameter(
            "only --local training runs from here; federated runs go through a hub"
        )
    with one_line_errors():
        site = _site_config(site_config)
        spec = (
            BUILT_IN[task](0)
            if task in BUILT_IN
            else TaskSpec.model_validate_json(Path(task).read_text())
        )
        if spec.kind not in site.policy.allowed_task_kinds:
            raise ValueError(f"task kind {spec.kind} is not allowed by {site.name}'s policy")
        with Ledger(site.ledger) as ledger:
            bases = {
                a.weights.name: resolve(ledger, a.weights.name, a.weights.sha256)
                for a in spec.adapters
            }
        train_split, test_split, scaling = load_splits(site.store, spec)
        device, limits = site_device(site), site_limits(site)
        state = fit(spec, train_split, rounds * spec.local_epochs, limits, device, bases)
        metrics = evaluate_task(spec, state, test_split, device=device, limits=limits, bases=bases)
        scores = outcomes.reported(metrics)
        digest = task_hash(spec)
        ledger = Ledger(site.ledger)
        ledger.record("train.local", {"task_hash": digest, "n_train": len(train_split.y), **scores})
        ledger.close()
        result = {
            "site": site.name,
            "task_hash": digest,
            "n_train": len(train_split.y),
            "n_test": len(test_split.y),
            **scores,
        }
        if save:
            record = register(
                registry or default_registry(),
                save,
                state,
                {
                    "task": spec.kind,
                    "task_hash": digest,
                    "task_spec": spec.model_dump(mode="json"),
                    "n_features": spec.data.width,
                    "seed": spec.seed,
                    "outcome": spec.name,
                    "strategy": "local-only",
                    "rounds": rounds,
                    "local_epochs": spec.local_epochs,
                    "runtime": "local",
                    "sites": {
                        site.name: {"n_train": len(train_split.y), "n_test": len(test_split.y)}
                    },
                    "metrics": {"per_site": {site.name: {**metrics, "n_test": len(test_split.y)}}},
                    "scaling": scaling.model_dump(mode="json"),
                },
            )
            result["model"] = record.id
    if as_json:
        typer.echo(json.dumps(result))
        return
    shown = ", ".join(f"{name} {value:.3f}" for name, value in scores.items())
    typer.echo(
        f"{site.name}: {shown} on {result['n_test']} held-out patients "
        f"(trained on {result['n_train']})"
    )
    if save:
        typer.echo(f"registered {result['model']}")
