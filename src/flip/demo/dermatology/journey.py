"""`flip demo dermatology`: the dermatology journey from source systems to a report.

Each synthetic hospital exports as its systems do (FHIR + DICOM, HL7 v2 + pharmacy CSV +
PACS, warehouse tables + JPEG manifest); each site ingests through the matching connector
into its own OMOP store; the cohort is counted at each site and released under the site's
threshold; each site admin approves the task's SHA-256 in the site's ledger, and a site
reads no row for training without that approval; features are made at the site (letters
de-identified before they are embedded); the biomarker and response models train local-only,
federated and pooled, and are tested on each site's own test split.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from flip.config import IngestSettings, SiteConfig
from flip.data.cdm.store import open_store
from flip.data.cohort.disclosure import suppress
from flip.data.features import dermatology as features
from flip.data.features.shuffle_split import train_test_indices
from flip.data.ingest import ingest_path
from flip.data.ledger import Ledger
from flip.data.sources.identity import PersonIdentity
from flip.data.sources.orthanc import INSTALL_HINT, orthanc_binary, orthanc_server
from flip.demo.dermatology import metrics, train
from flip.demo.dermatology.report import write_outputs
from flip.demo.phases import Phases
from flip.fl.tasks import dermatology as models
from flip.site.approvals import decide
from flip.synth.dermatology import write_world
from flip.synth.dermatology.codes import DRUGS, PSORIATIC_ARTHRITIS, SCORES
from flip.synth.dermatology.sites import SiteSpec, default_sites
from flip.synth.dermatology.warehouse import LOCAL_DIAGNOSES, LOCAL_DRUGS, LOCAL_OBSERVATIONS
from flip.synth.dermatology.world import INGESTS

PHASES = ("generate", "ingest", "cohort", "approve", "features", "train", "report")
PROJECT = "dermatology-biomarkers"
COHORT = "psoriasis, started a biologic, baseline photograph within 30 days"
#: Photographs are read at this size for the models (the files are 224 x 224).
IMAGE_SIZE = 64
TEST_FRACTION = 0.3


class DermatologyDemoError(RuntimeError):
    """The demo could not go on; the message says why in one line."""


@dataclass(frozen=True)
class DermatologyOptions:
    """What `flip demo dermatology` takes."""

    sites: int = 4
    size: str = "small"
    out: Path = Path("demo-dermatology")
    seed: int = 0
    rounds: int = 10
    local_epochs: int = 2
    people: tuple[int, ...] | None = None  # people per site, over --size (tests use few)

    def check(self) -> None:
        """Raise DermatologyDemoError on options no run can use."""
        if not 1 <= self.sites <= 12:
            raise DermatologyDemoError(f"--sites must be between 1 and 12, not {self.sites}")
        if self.size not in ("small", "default", "large"):
            raise DermatologyDemoError(f"--size must be small, default or large, not {self.size!r}")
        if self.people is not None and len(self.people) != self.sites:
            raise DermatologyDemoError("give one number of people per site")
        if not 1 <= self.rounds <= 200:
            raise DermatologyDemoError(f"--rounds must be between 1 and 200, not {self.rounds}")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DermatologyDemoError(
                f"cannot write to --out {self.out}: {exc.strerror or exc}"
            ) from None


@dataclass
class DermatologyResult:
    """What the demo produced: results.json's document and each phase's seconds."""

    results: dict[str, Any]
    phases: dict[str, float] = field(default_factory=dict)


def site_codes(export: str) -> features.SiteCodes:
    """The source codes a site of this export kind stores for PASI, skin type, psoriatic
    arthritis and the psoriasis biologics (its data engineer's mapping)."""
    biologics = ("adalimumab", "ustekinumab", "secukinumab")
    if export == "warehouse":
        return features.SiteCodes(
            frozenset({LOCAL_OBSERVATIONS["pasi"]}),
            frozenset({LOCAL_OBSERVATIONS["fitzpatrick"]}),
            frozenset({LOCAL_DIAGNOSES["psa"]}),
            {LOCAL_DRUGS[d]: d for d in biologics},
        )
    drug_codes = (
        {LOCAL_DRUGS[d]: d for d in biologics}
        if export == "hl7v2"
        else {DRUGS[d][0]: d for d in biologics}
    )
    return features.SiteCodes(
        frozenset({SCORES["pasi"][0]}),
        frozenset({SCORES["fitzpatrick"][0]}),
        frozenset({PSORIATIC_ARTHRITIS[0]}),
        drug_codes,
    )


def task_config(options: DermatologyOptions, encoder: str) -> dict[str, Any]:
    """The task the sites approve: cohort, inputs, models and training, as JSON."""
    return {
        "name": "Psoriasis digital biomarker (PASI from a photograph) and PASI75 at week 16",
        "cohort": COHORT,
        "features": list(features.FEATURES),
        "text_encoder": encoder,
        "image_size": IMAGE_SIZE,
        "rounds": options.rounds,
        "local_epochs": options.local_epochs,
        "seed": options.seed,
        "test_fraction": TEST_FRACTION,
    }


def task_hash(config: dict[str, Any]) -> str:
    """SHA-256 over the task's canonical JSON and the code that reads and trains."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for module in (features, models, train):
        digest.update(b"\0" + inspect.getsource(module).encode())
    return digest.hexdigest()


def run_dermatology(
    options: DermatologyOptions, console: Console | None = None
) -> DermatologyResult:
    """Run the journey and write OUT/results.json, OUT/report.html and its PNG figures."""
    options.check()
    console = console or Console()
    phase = Phases(console)
    out = options.out.resolve()
    world = out / "world"

    with phase("generate", "1. Synthetic hospitals export their records and photographs"):
        written = write_world(
            world,
            n_sites=options.sites,
            seed=options.seed,
            size=options.size,
            sites=_specs(options),
            progress=lambda line: console.print(f"  {line}"),
        )
    exports = {w.spec.name: w.spec.export for w in written}

    with ExitStack() as pacs:  # a PACS site's Orthanc runs until its photographs are read
        with phase("ingest", "2. Each site ingests through its own connectors into OMOP"):
            configs = {
                w.spec.name: _ingest(w, out / "sites" / w.spec.name, console, pacs) for w in written
            }

        with phase("cohort", f"3. Cohort at each site: {COHORT}"):
            released = _cohort_counts(configs, exports, console)

        encoder = _encoder()
        config = task_config(options, encoder)
        digest = task_hash(config)
        with phase("approve", "4. Each site admin approves the task by its SHA-256"):
            console.print(f"  task '{config['name']}'\n  sha256 {digest}")
            for name, site in configs.items():
                decide(site, None, PROJECT, digest, "approved", by=f"{name}-admin (demo)")
                console.print(f"  {name}: admin approves in the site's ledger (auto, for the demo)")

        def may_read(name: str) -> bool:
            with Ledger(configs[name].ledger) as ledger:
                return ledger.is_approved(PROJECT, digest)

        with phase("features", "5. Features at each site: photographs, baseline data, letters"):
            data = {
                name: _site_data(name, site, exports[name], encoder, options.seed, console)
                for name, site in configs.items()
                if may_read(name)
            }
            _scale(data)

    with phase("train", "6. Biomarker and response models: local-only, federated, pooled"):
        arms, curves, sent = _train_all(data, options, console, may_read)

    with phase("report", "7. Evaluation at each site and the report"):
        results = write_outputs(
            out,
            arms,
            curves,
            {
                "cohort": COHORT,
                "released": released,
                "task_hash": digest,
                "text_encoder": encoder,
                "rounds": options.rounds,
                "local_epochs": options.local_epochs,
                "size": options.size,
                "seed": options.seed,
                "fused_bytes_per_round": sent,
            },
            text_adapter_bytes(),
        )
        _print_results(console, results)
        console.print(f"  wrote {out / 'results.json'} and {out / 'report.html'}")
    return DermatologyResult(results, phase.seconds)


def _specs(options: DermatologyOptions) -> list[SiteSpec] | None:
    """The world's sites with `options.people` people each, or None for --size's."""
    if options.people is None:
        return None
    specs = default_sites(options.sites, options.size)
    return [replace(s, n_persons=n) for s, n in zip(specs, options.people, strict=True)]


def text_adapter_bytes(rank: int = 8) -> dict[str, int]:
    """Bytes a site sends per round when the MiniLM text encoder is fine-tuned with LoRA
    (rank `rank` on query and value, and the head), against full fine-tuning."""
    from flip.data.features.adapter import AdapterSpec, Weights
    from flip.fl.tasks.adapters import Adapted, bytes_per_round, tuned_text

    adapter = AdapterSpec(
        rank=rank, alpha=2.0 * rank, weights=Weights(name="minilm", sha256="0" * 64)
    )
    return bytes_per_round(Adapted(tuned_text(0, 64, 1, adapter, None)))


def _encoder() -> str:
    from flip.data.features.encoder import default_encoder

    return default_encoder()


def _ingest(written, site_dir: Path, console: Console, pacs: ExitStack) -> SiteConfig:
    """Ingest every source of the site (its world.json entry) into a fresh store; a PACS
    export is stored in a local Orthanc (kept running by `pacs`) and read over DICOMweb."""
    site_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("store.duckdb", "store.duckdb.wal", "ledger.sqlite"):
        (site_dir / stale).unlink(missing_ok=True)
    settings = IngestSettings.load(written.folder / "site.yaml")
    found = settings.person_identifier
    config = SiteConfig(
        name=written.spec.name,
        store="store.duckdb",
        ledger="ledger.sqlite",
        person_identifier=found,
    )
    config.save(site_dir / "site.yaml")
    config = SiteConfig.load(site_dir / "site.yaml")
    identity = PersonIdentity(found.system, found.hl7v2_authority, found.hl7v2_type)
    store = open_store(config.store)
    try:
        store.create()
        for kind, path in INGESTS[written.spec.export]:
            url = None
            if path == "pacs":
                url = _pacs(written.folder / path, site_dir / "pacs", pacs, console)
            report = ingest_path(
                store,
                kind,
                None if url else written.folder / path,
                url=url,
                source_system=f"{written.spec.name}-{kind}-{Path(path).name}",
                code_systems=settings.code_systems,
                person_identifier=identity,
            )
            console.print(
                f"  {written.spec.name} {kind:6} {path:22} {report.loaded:6} loaded, "
                f"{report.quarantined} quarantined, {sum(report.unmapped.values())} unmapped"
            )
    finally:
        store.close()
    return config


def _pacs(export: Path, folder: Path, pacs: ExitStack, console: Console) -> str | None:
    """Store a PACS export's photographs in a local Orthanc (on a free loopback port, kept
    running by `pacs`) and give its DICOMweb root; None, read from the files, without Orthanc."""
    if orthanc_binary() is None:
        console.print(
            f"  {export.parent.name}: Orthanc is not installed ({INSTALL_HINT}), so its "
            "photographs are read from the PACS export's DICOM files (the same connector reads "
            "them over DICOMweb with `flip site ingest dicom --url`)"
        )
        return None
    shutil.rmtree(folder, ignore_errors=True)
    server = pacs.enter_context(orthanc_server(folder))
    stored = server.upload_all(sorted(export.rglob("*.dcm")))
    console.print(
        f"  {export.parent.name}: {stored} photographs stored in its PACS (Orthanc at "
        f"{server.http}), read over DICOMweb"
    )
    return server.dicomweb


def _cohort_counts(
    configs: dict[str, SiteConfig], exports: dict[str, str], console: Console
) -> dict[str, dict[str, int | None]]:
    """Each step's count at each site as released (None: suppressed below the threshold)."""
    steps = ("psoriasis", "biologic", "photo")
    labels = ("psoriasis", "+ started a biologic", "+ photograph within 30 days")
    released: dict[str, dict[str, int | None]] = {}
    table = Table(title="Cohort counts as released (suppressed below each site's threshold)")
    table.add_column("step")
    for name in configs:
        table.add_column(name, justify="right")
    for name, site in configs.items():
        store = open_store(site.store, read_only=True)
        try:
            _, attrition = features.cohort(store, site_codes(exports[name]))
        finally:
            store.close()
        threshold = site.policy.min_cell_size
        released[name] = {s: suppress(getattr(attrition, s), threshold).count for s in steps}
    for step, label in zip(steps, labels, strict=True):
        cells = []
        for name, site in configs.items():
            count = released[name][step]
            cells.append(f"<{site.policy.min_cell_size}" if count is None else str(count))
        table.add_row(label, *cells)
    console.print(table)
    return released


@dataclass
class _SiteData:
    """One site's splits for both models, and the test rows' skin types."""

    biomarker: tuple[train.Split, train.Split]
    response: tuple[train.Split, train.Split]
    test_fitzpatrick: np.ndarray


def _site_data(
    name: str, site: SiteConfig, export: str, encoder: str, seed: int, console: Console
) -> _SiteData:
    """Read the site's cohort features (after its approval), split by person."""
    store = open_store(site.store, read_only=True)
    try:
        found = features.extract(store, site_codes(export))
    finally:
        store.close()
    members = found.members
    people = np.array([m.person_id for m in members], dtype=np.int64)
    labels = np.array([-1 if m.pasi75 is None else m.pasi75 for m in members])
    test_people = set(people[_test_rows(labels, seed)].tolist()) if len(people) > 1 else set()
    tabular = np.stack([m.features for m in members]) if members else np.zeros((0, 16))
    letters = features.letter_embeddings([m.letter for m in members], encoder)
    baseline_photos = features.photo_tensors([m.photo for m in members], IMAGE_SIZE)
    labelled = np.array([m.pasi75 is not None for m in members], dtype=bool)
    response = train.Split(
        tabular[labelled],
        letters[labelled],
        baseline_photos[labelled],
        labels[labelled].astype(np.float32),
    )
    in_test = np.array([p in test_people for p in people[labelled]], dtype=bool)
    photos = features.photo_tensors(found.photo_paths, IMAGE_SIZE)
    skin = np.eye(6, dtype=np.float32)[np.clip(found.photo_fitzpatrick - 1, 0, 5)]
    biomarker = train.Split(
        skin, np.zeros((len(skin), 0), np.float32), photos, found.photo_pasi.astype(np.float32)
    )
    photo_test = np.array([p in test_people for p in found.photo_person], dtype=bool)
    console.print(
        f"  {name}: {len(members)} in the cohort, {int(labelled.sum())} with week-16 PASI, "
        f"{len(found.photo_paths)} photographs with a same-day PASI; letters de-identified "
        f"and embedded ({encoder})"
    )
    return _SiteData(
        (biomarker.take(np.flatnonzero(~photo_test)), biomarker.take(np.flatnonzero(photo_test))),
        (response.take(np.flatnonzero(~in_test)), response.take(np.flatnonzero(in_test))),
        found.photo_fitzpatrick[photo_test],
    )


def _test_rows(labels: np.ndarray, seed: int) -> np.ndarray:
    """The test persons' rows, stratified by PASI75 (unknown as its own class) when every
    class has two people."""
    counts = np.unique(labels, return_counts=True)[1]
    by = labels if counts.min() >= 2 and len(counts) > 1 else None
    try:
        return train_test_indices(len(labels), TEST_FRACTION, seed, by)[1]
    except ValueError:
        return train_test_indices(len(labels), TEST_FRACTION, seed, None)[1]


def _scale(data: dict[str, _SiteData]) -> None:
    """Standardise the response features by the mean and SD of every site's training rows,
    combined from each site's sums and counts (as federated scaling does); missing -> 0."""
    trains = [d.response[0].features for d in data.values()]
    n = sum(np.sum(~np.isnan(t), axis=0) for t in trains)
    total = sum(np.nansum(t, axis=0) for t in trains)
    squares = sum(np.nansum(t**2, axis=0) for t in trains)
    mean = total / np.maximum(n, 1)
    sd = np.sqrt(np.maximum(squares / np.maximum(n, 1) - mean**2, 0))
    sd = np.where(sd > 1e-6, sd, 1.0)
    for d in data.values():
        for split in d.response:
            split.features[:] = np.nan_to_num((split.features - mean) / sd, nan=0.0)


def _train_all(
    data: dict[str, _SiteData],
    options: DermatologyOptions,
    console: Console,
    may_read: Callable[[str], bool],
):
    """Every arm of both models, evaluated on every site's test split; a site trains in the
    federation only while its ledger approves the task (checked each run)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    n_text = next(iter(data.values())).response[0].text.shape[1]
    recipes = {
        "biomarker": train.Recipe(
            "biomarker", 6, 0, True, options.seed, local_epochs=options.local_epochs
        ),
        "response": train.Recipe(
            "response",
            len(features.FEATURES),
            n_text,
            True,
            options.seed,
            local_epochs=options.local_epochs,
        ),
    }
    arms: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    curves: dict[str, list[float]] = {"biomarker": [], "response": []}
    sent: dict[str, int] = {}
    for task, recipe in recipes.items():
        trains = {n: getattr(d, task)[0] for n, d in data.items()}
        tests = {n: getattr(d, task)[1] for n, d in data.items()}
        union = train.Split.join(list(tests.values()))

        def score(model, recipe=recipe, union=union) -> float:
            p = train.predict(model, recipe, union)
            if recipe.task == "biomarker":
                return metrics.mae(p, union.y)
            return metrics.auroc(union.y, p)

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
        ) as bar:
            label = "MAE" if task == "biomarker" else "AUROC"
            job = bar.add_task(f"  {task}: federated rounds", total=options.rounds, status="")

            def on_round(
                number, model, nbytes, task=task, job=job, label=label, bar=bar, score=score
            ):
                value = score(model)
                curves[task].append(value)
                sent[task] = nbytes
                bar.update(job, advance=1, status=f"{label} {value:.3f} on every test split")

            fed = train.federated(recipe, trains, options.rounds, may_read, on_round)
        console.print(f"  {task}: local-only and pooled baselines")
        local = train.local_only(recipe, trains, options.rounds)
        pool = train.pooled(recipe, trains, options.rounds)
        arms[task] = {
            "local": {n: _evaluate(local[n], recipe, tests[n]) for n in tests},
            "federated": {n: _evaluate(fed, recipe, tests[n]) for n in tests},
            "pooled": {n: _evaluate(pool, recipe, tests[n]) for n in tests},
        }
        if task == "biomarker":
            for n, d in data.items():
                arms[task]["federated"][n]["fitzpatrick"] = d.test_fitzpatrick
    return arms, curves, sent


def _evaluate(model, recipe: train.Recipe, test: train.Split) -> dict[str, Any]:
    """The arm's predictions on a site's test split, and the truth beside them."""
    return {"predicted": train.predict(model, recipe, test), "truth": test.y}


def _print_results(console: Console, results: dict[str, Any]) -> None:
    table = Table(title="Biomarker MAE (PASI points) and response AUROC on each site's test set")
    for column in (
        "site",
        "n photo",
        "local",
        "federated",
        "pooled",
        "n resp",
        "local",
        "federated",
        "pooled",
    ):
        table.add_column(column, justify="left" if column == "site" else "right")
    for site, fed in results["biomarker"]["federated"].items():
        cells = [str(fed["n_test"])]
        cells += [
            _fmt(results["biomarker"][a][site]["mae"]) for a in ("local", "federated", "pooled")
        ]
        cells.append(str(results["response"]["federated"][site]["n_test"]))
        cells += [
            _fmt(results["response"][a][site]["auroc"]) for a in ("local", "federated", "pooled")
        ]
        table.add_row(site, *cells)
    console.print(table)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
