"""`flip demo radiology`: head CTs from each hospital's PACS to a federated 3D network.

Each synthetic hospital (`flip.synth.radiology`) stores its head CTs in its own Orthanc PACS,
started on loopback for the demo; its records (patients, blood pressures, diagnoses) are
ingested from its FHIR bundle and its studies over DICOMweb (QIDO-RS), so the store keeps a
WADO-RS reference per series and no pixel. Each site admin approves the task's SHA-256; in
Flower's simulation runtime each site's ClientApp checks that approval, then reads every
cohort member's series from its PACS over WADO-RS, de-identifies each object (PS3.15 basic
profile) before its pixels are used, stacks the volume and trains the MONAI 3D network; only
weights and metrics leave. Writes OUT/results.json with each site's AUROC on its own test set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from flip.config import SiteConfig
from flip.data.cdm.store import open_store
from flip.data.ingest import ingest_path
from flip.data.ledger import Ledger
from flip.data.sources.identity import PersonIdentity
from flip.data.sources.orthanc import INSTALL_HINT, Orthanc, orthanc_binary, orthanc_server
from flip.fl.runtime.simulation import simulate
from flip.fl.server import task_server_app
from flip.fl.tasks import task_hash
from flip.fl.tasks.catalog import head_ct_infarct_task
from flip.synth.radiology import RadiologyWritten, mrn_system, write_world

PROJECT = "radiology-stroke"


class RadiologyDemoError(RuntimeError):
    """The demo could not go on; the message says why in one line."""


@dataclass(frozen=True)
class RadiologyOptions:
    """What `flip demo radiology` takes."""

    sites: int = 3
    out: Path = Path("demo-radiology")
    seed: int = 0
    rounds: int = 4
    people: int | None = None  # patients per site; None: each site's own
    network: str = "densenet-small"
    cpus: int | None = None

    def check(self) -> None:
        """Raise RadiologyDemoError on options no run can use, or without Orthanc."""
        if not 1 <= self.sites <= 8:
            raise RadiologyDemoError(f"--sites must be between 1 and 8, not {self.sites}")
        if not 1 <= self.rounds <= 100:
            raise RadiologyDemoError(f"--rounds must be between 1 and 100, not {self.rounds}")
        if orthanc_binary() is None:
            raise RadiologyDemoError(
                f"the radiology demo reads each site's PACS: install Orthanc ({INSTALL_HINT})"
            )


@contextmanager
def _phase(console: Console, seconds: dict[str, float], name: str, title: str) -> Iterator[None]:
    console.rule(f"[bold]{title}")
    start = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - start, 1)
    console.print(f"  [dim]{seconds[name]:.1f} s[/dim]")


def run_radiology(options: RadiologyOptions, console: Console | None = None) -> dict[str, Any]:
    """Run the journey; write and return OUT/results.json's document."""
    options.check()
    console = console or Console()
    out = options.out.resolve()
    seconds: dict[str, float] = {}
    spec = head_ct_infarct_task(options.seed, options.network)
    digest = task_hash(spec)
    with _phase(console, seconds, "generate", "1. Synthetic hospitals write head CTs as DICOM"):
        written = write_world(out / "world", options.sites, options.seed, options.people)
        for w in written:
            console.print(
                f"  {w.site.name}: {w.studies} studies ({w.infarcts} infarcts), "
                f"{w.files} DICOM files ({w.site.storage})"
            )
    with ExitStack() as running:
        configs: dict[str, Path] = {}
        with _phase(console, seconds, "ingest", "2. Each PACS takes its studies; sites ingest"):
            for w in written:
                pacs = running.enter_context(orthanc_server(out / "pacs" / w.site.name))
                pacs.upload_all(sorted((w.folder / "dicom").rglob("*.dcm")))
                configs[w.site.name] = _ingest(w, pacs, out / "sites" / w.site.name, console)
        with _phase(console, seconds, "approve", "3. Each site admin approves the task"):
            console.print(f"  task '{spec.name}'\n  sha256 {digest}")
            for name, path in configs.items():
                with Ledger(SiteConfig.load(path).ledger) as ledger:
                    ledger.decide(PROJECT, digest, "approved", by=f"{name}-admin (demo)")
        with _phase(console, seconds, "train", "4. Federated training (Flower simulation)"):
            server, result = task_server_app(
                PROJECT, spec, rounds=options.rounds, n_sites=len(configs)
            )
            simulate(server, list(configs.values()), cpus=options.cpus)
    if not result.per_site:
        raise RadiologyDemoError("no site reported an evaluation: see the sites' ledgers")
    results = {
        "task": spec.name,
        "task_hash": digest,
        "network": options.network,
        "rounds": result.rounds,
        "per_site": result.per_site,
        "seconds": seconds,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    _print(console, result.per_site)
    console.print(f"  wrote {out / 'results.json'}")
    return results


def _ingest(written: RadiologyWritten, pacs: Orthanc, folder: Path, console: Console) -> Path:
    """A fresh site: its store, the FHIR bundle, then its PACS over DICOMweb; its site.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("store.duckdb", "store.duckdb.wal", "ledger.sqlite"):
        (folder / stale).unlink(missing_ok=True)
    name = written.site.name
    config = SiteConfig(
        name=name,
        store="store.duckdb",
        ledger="ledger.sqlite",
        person_identifier={"system": mrn_system(name)},
    )
    config.policy.allowed_task_kinds = ["image-cnn"]
    config.save(folder / "site.yaml")
    config = SiteConfig.load(folder / "site.yaml")
    identity = PersonIdentity(mrn_system(name))
    store = open_store(config.store)
    try:
        store.create()
        for kind, where in (("fhir", written.folder / "fhir"), ("dicom", None)):
            report = ingest_path(
                store,
                kind,
                where,
                url=pacs.dicomweb if where is None else None,
                source_system=f"{name}-{kind}",
                person_identifier=identity,
            )
            source = pacs.dicomweb if where is None else str(where)
            console.print(
                f"  {name} {kind:5} {source}: {report.loaded} loaded, "
                f"{report.quarantined} quarantined"
            )
    finally:
        store.close()
    return folder / "site.yaml"


def _print(console: Console, per_site: dict[str, dict[str, float]]) -> None:
    table = Table(title="Federated model on each site's own test set")
    for column in ("site", "n_test", "AUROC"):
        table.add_column(column, justify="left" if column == "site" else "right")
    for site, metrics in sorted(per_site.items()):
        auroc = metrics.get("auroc")
        shown = "n/a" if auroc is None else f"{auroc:.3f}"
        table.add_row(site, str(int(metrics.get("n_test", 0))), shown)
    console.print(table)
