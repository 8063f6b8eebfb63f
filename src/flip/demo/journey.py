"""The whole federated journey on embedded defaults, as `flip demo` runs it.

Every actor plays its real part: each synthetic hospital ingests its own export
into its own store; the hub runs under uvicorn on loopback; each site's agent
talks to it over HTTP, outbound only; each site admin approves the task through
the site's own approval function; Flower trains; only counts, model updates
and metrics leave a site.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flip.config import SiteConfig
from flip.data.cdm.store import open_store
from flip.data.ingest import ingest_path
from flip.demo import baselines
from flip.demo.access import RESEARCHER, DemoAccess, instructions
from flip.demo.options import DemoError, DemoOptions
from flip.demo.phases import Phases
from flip.demo.report import size_label, write_outputs
from flip.fl.registry import federated_lineage, register_with_best
from flip.fl.runtime.simulation import simulate
from flip.fl.server import task_server_app
from flip.fl.tasks import mace_task, task_hash
from flip.hub.app import bootstrap_admin, create_app
from flip.hub.client import ResearcherClient
from flip.hub.server import BackgroundServer
from flip.site.agent import SiteAgent
from flip.site.approvals import decide
from flip.site.hub_client import HubClient
from flip.synth import default_profiles, generate_site
from flip.synth.export import export_site

PHASES = ("generate", "ingest", "hub start", "query", "approve", "train", "baselines", "report")

#: Cohort questions the researcher asks (concept ids from the starter vocabulary).
QUERIES: list[dict[str, Any]] = [
    {
        "name": "Type 2 diabetes with systolic BP >= 140 mmHg",
        "include": [
            {"table": "condition_occurrence", "concept_ids": [201826]},
            {"table": "measurement", "concept_ids": [3004249], "value_min": 140},
        ],
    },
    {
        "name": "Smokers with a cerebral infarction",
        "include": [
            {"table": "observation", "concept_ids": [4298794]},
            {"table": "condition_occurrence", "concept_ids": [443454]},
        ],
    },
]


@dataclass
class DemoResult:
    """What the demo produced."""

    results: dict[str, Any]
    queries: list[dict[str, Any]]
    rounds: list[dict[str, float]]
    phases: dict[str, float] = field(default_factory=dict)
    hub_database: Path | None = None
    site_dirs: dict[str, Path] = field(default_factory=dict)


def _wait(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
    )


def run_demo(options: DemoOptions, console: Console | None = None) -> DemoResult:
    """Run the journey and write OUT/results.json, OUT/report.md and OUT/auroc.png."""
    options.check()
    console = console or Console()
    phase = Phases(console)
    out = options.out.resolve()
    profiles = default_profiles(options.sites)
    site_dirs = {p.name: out / "sites" / p.name for p in profiles}
    spec = mace_task(options.seed)
    digest = task_hash(spec)

    with phase("generate", "1. Synthetic hospitals export their data"):
        for profile in profiles:
            patients = generate_site(profile, options.seed)
            export = site_dirs[profile.name] / "export"
            if export.exists():
                _clear(export)
            export_site(profile, patients, export, images=False)
            console.print(
                f"  {profile.name}: {len(patients)} patients, exported as {profile.export_format}"
            )

    configs: dict[str, SiteConfig] = {}
    with (
        phase("ingest", "2. Each site ingests its export into its own OMOP CDM store"),
        _progress(console) as bar,
    ):
        for profile in profiles:
            configs[profile.name] = _ingest_site(profile, site_dirs[profile.name], bar)
    access = DemoAccess.new(list(configs))
    access.set_console_passwords({name: site_dirs[name] / "site.yaml" for name in configs})
    access.save(out)

    hub_db = out / "hub.sqlite"
    for stale in [*out.glob("hub.sqlite*"), *out.glob("hub-signing.key*")]:
        stale.unlink()
    with phase("hub start", "3. The hub starts; sites enrol and their agents poll it"):
        app = create_app(f"sqlite:///{hub_db}", signing_key=out / "hub-signing.key")
        hub = BackgroundServer(app).start()
        admin_token = bootstrap_admin(app.state.engine)
        assert admin_token is not None
        admin = ResearcherClient(hub.url, admin_token)
        researcher = ResearcherClient(
            hub.url, admin.create_user(RESEARCHER, "researcher", access.researcher_password)
        )
        stop = threading.Event()
        agents: list[threading.Thread] = []
        clients: dict[str, HubClient] = {}
        for name, config in configs.items():
            credential = HubClient.enrol(hub.url, admin.create_site(name))
            clients[name] = HubClient(hub.url, credential)
            agent = SiteAgent(config, clients[name])
            thread = threading.Thread(
                target=agent.run_forever,
                args=(stop, options.poll_interval),
                name=f"agent-{name}",
                daemon=True,
            )
            thread.start()
            agents.append(thread)
        console.print(
            f"  hub on {hub.url} (SQLite {hub_db.name}); {len(agents)} site agents polling it"
        )

    try:
        with phase("query", "4. A researcher asks the sites for cohort counts"):
            project = researcher.create_project(
                "Cardiovascular risk across hospitals", "5-year MACE risk model, trained federated."
            )
            researcher.invite(project, list(configs))
            ids = [researcher.create_query(project, q["name"], q) for q in QUERIES]
            _wait(lambda: all(not researcher.query(i)["pending"] for i in ids), "cohort counts")
            queries = [researcher.query(i) for i in ids]
            _print_queries(console, queries, list(configs))

        with phase("approve", "5. Each site admin approves the task by its SHA-256"):
            researcher.propose_task(project, digest, spec.kind, spec.model_dump(mode="json"))
            console.print(f"  task {spec.kind} '{spec.name}'\n  sha256 {digest}")
            for name, config in configs.items():
                decide(
                    config, clients[name], project, digest, "approved", by=f"{name}-admin (demo)"
                )
                console.print(
                    f"  {name}: admin approves (the demo is auto-approving on their behalf)"
                )
            _wait(
                lambda: set(researcher.project(project)["sites"].values()) == {"approved"},
                "approvals",
            )

        with phase("train", "6. Federated training with Flower (simulation runtime)"):
            rounds_seen, per_site = _train(
                console, researcher, project, digest, spec, configs, site_dirs, options
            )

        with phase("baselines", "7. Baselines: each site alone, and all data pooled"):
            stores = {name: c.store for name, c in configs.items()}
            local = baselines.local_only(stores, spec, options.rounds)
            pooled = baselines.pooled(stores, spec, options.rounds)
    finally:
        stop.set()
        for thread in agents:
            thread.join(timeout=5)
        for client in clients.values():
            client.close()
        hub.stop()

    with phase("report", "8. Results"):
        meta = {
            "task_name": spec.name,
            "task_hash": digest,
            "rounds": options.rounds,
            "seed": options.seed,
            "threshold": min(c.policy.min_cell_size for c in configs.values()),
            "sites": list(configs),
        }
        arms = {"local": local, "federated": per_site, "pooled": pooled}
        results = write_outputs(out, arms, queries, rounds_seen, meta)
        _print_results(console, results)
        console.print(
            f"  wrote {out / 'results.json'}, {out / 'report.md'} and {out / 'auroc.png'}"
        )
        console.print(
            "\n" + instructions(out, access), highlight=False, markup=False, soft_wrap=True
        )
    return DemoResult(results, queries, rounds_seen, phase.seconds, hub_db, site_dirs)


def _clear(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()


def _ingest_site(profile, site_dir: Path, bar: Progress) -> SiteConfig:
    store_path = site_dir / "store.duckdb"
    stale_files = ("store.duckdb.wal", "ledger.sqlite", "ledger.console-passwords")
    for stale in (store_path, *(site_dir / name for name in stale_files)):
        stale.unlink(missing_ok=True)
    config = SiteConfig(name=profile.name, store="store.duckdb", ledger="ledger.sqlite")
    config.save(site_dir / "site.yaml")
    config = SiteConfig.load(site_dir / "site.yaml")
    store = open_store(config.store)
    try:
        store.create()
        kind = "csv" if profile.export_format == "csv" else "fhir"
        task = bar.add_task(f"  {profile.name} ({profile.export_format})", total=None, status="")
        report = ingest_path(
            store,
            kind,
            site_dir / "export",
            source_system=f"{profile.name}-{kind}",
            progress=lambda n: bar.advance(task, n),
        )
        bar.update(
            task,
            total=report.read,
            completed=report.read,
            status=f"{report.loaded} loaded, {report.quarantined} quarantined, "
            f"{sum(report.unmapped.values())} unmapped",
        )
    finally:
        store.close()
    return config


def _train(console, researcher, project, digest, spec, configs, site_dirs, options):
    run_id = researcher.create_run(project, digest, options.rounds)
    _wait(lambda: len(researcher.run(run_id)["sites"]) == len(configs), "sites to join the run")
    joined = [n for n, s in researcher.run(run_id)["sites"].items() if s["status"] == "joined"]
    if not joined:
        raise DemoError("no site joined the run")
    researcher.set_run_status(run_id, "running")
    console.print(f"  run {run_id}: {', '.join(joined)} joined; FedAvg for {options.rounds} rounds")
    with _progress(console) as bar:
        task = bar.add_task("  federated rounds", total=options.rounds, status="")

        def on_round(number: int, metrics: dict[str, float]) -> None:
            researcher.add_round(run_id, number, metrics)
            bar.update(
                task,
                advance=1,
                status=f"AUROC {metrics.get('auroc', float('nan')):.3f}  "
                f"loss {metrics.get('loss', float('nan')):.3f}",
            )

        server_app, result = task_server_app(
            str(project), spec, rounds=options.rounds, n_sites=len(joined), on_round=on_round
        )
        try:
            simulate(
                server_app,
                [site_dirs[n] / "site.yaml" for n in joined],
                secure=spec.secure_aggregation,
                cpus=options.cpus,
            )
        except Exception:
            researcher.set_run_status(run_id, "failed")
            raise
    researcher.set_run_status(run_id, "completed", {"per_site": result.per_site})
    record, best = register_with_best(
        options.out.resolve() / "models",
        "mace-5y",
        result.state_dict,
        federated_lineage(
            spec,
            rounds=options.rounds,
            per_site=result.per_site,
            round_metrics=result.rounds,
            scaling=result.scaling,
        ),
        result.best_round,
        result.best_state_dict,
    )
    console.print(f"  registered the federated model as {record.id} in {record.path.parent}")
    if best is not None:
        console.print(f"  and its best round's ({result.best_round}) as {best.id}")
    return result.rounds, result.per_site


def _print_queries(console: Console, queries: list[dict[str, Any]], sites: list[str]) -> None:
    table = Table(title="Cohort counts as released (suppressed below each site's threshold)")
    table.add_column("query")
    for site in sites:
        table.add_column(site, justify="right")
    for q in queries:
        cells = []
        for site in sites:
            r = q["results"][site]
            cells.append(f"<{r['threshold']}" if r["suppressed"] else str(r["count"]))
        table.add_row(q["name"], *cells)
    console.print(table)


def _print_results(console: Console, results: dict[str, Any]) -> None:
    table = Table(title="AUROC on each site's own held-out test set")
    for column in ("site", "n_test", "local-only", "federated", "pooled"):
        table.add_column(column, justify="right" if column != "site" else "left")
    for site, fed in results["federated"].items():
        cells = []
        for arm in ("local", "federated", "pooled"):
            value = results[arm][site]["auroc"]
            cells.append("n/a" if value is None else f"{value:.3f}")
        table.add_row(site, size_label(fed["n_test"]), *cells)
    console.print(table)
