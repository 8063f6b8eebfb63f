"""`flip synth …`: synthetic hospital exports for trying FLIP out."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flip.cli.errors import one_line_errors

app = typer.Typer(
    help="Write synthetic hospital exports (FHIR, HL7 v2, CSV, DICOM).", no_args_is_help=True
)


class ExportFormat(StrEnum):
    fhir_bundle = "fhir-bundle"
    fhir_ndjson = "fhir-ndjson"
    csv = "csv"


#: The file that marks a folder as `flip synth site`'s export, holding its format.
MARKER = ".flip-synth"


@contextmanager
def replaced_folder(out: Path, kind: str, command: str) -> Iterator[Path]:
    """A new sibling folder to write into that then replaces `out` whole (an earlier export's
    files never linger); ValueError, before anything is written, when `out` is the current
    folder or holds files that are not an earlier output of the same `kind` (`command`, the
    synth command that writes it, names it in the error)."""
    if not out.name or out.resolve() == Path.cwd():
        raise ValueError("--out: give a new folder's name, not the current folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file, not a folder")
    marker = out / MARKER
    earlier = marker.read_text(encoding="utf-8").strip() if marker.is_file() else None
    if out.exists() and any(out.iterdir()) and earlier != kind:
        raise ValueError(
            f"--out {out}: holds files that are not an earlier `{command}` output; "
            "give a new or empty folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield fresh
        (fresh / MARKER).write_text(kind + "\n", encoding="utf-8")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            out.rename(old / out.name)
            fresh.rename(out)
            shutil.rmtree(old)
        else:
            fresh.rename(out)
    finally:
        if fresh.exists():
            shutil.rmtree(fresh)


@app.command()
def site(
    name: Annotated[str, typer.Argument(help="The hospital's name.")],
    out: Annotated[
        Path,
        typer.Option(help="Folder to write the export into (replaced whole), e.g. exports/a."),
    ],
    export_format: Annotated[
        ExportFormat, typer.Option("--format", help="What the hospital exports.")
    ] = (ExportFormat.fhir_bundle),
    patients: Annotated[int, typer.Option(min=1, max=1_000_000, help="How many patients.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same patients.")] = 0,
    images: Annotated[
        bool, typer.Option(help="Also a chest radiograph per patient, as DICOM in OUT/dicom.")
    ] = True,
) -> None:
    """Write one synthetic hospital's export (csv also writes its mapping.yaml).

    OUT is replaced whole: it must be new, empty or an earlier export of the same --format.
    Every patient has a clinic letter in the export, and with --images (the
    default) a chest radiograph in OUT/dicom for `flip site ingest dicom`.

    Example: flip synth site north --format csv --patients 300 --out /tmp/flip-tour/north-export
    """
    from flip.synth import SiteProfile, generate_site
    from flip.synth.export import export_site

    with one_line_errors():
        profile = SiteProfile(
            name=name,
            n_patients=patients,
            export_format=export_format.value,
            age_mean=60.0,
            smoker_rate=0.2,
        )
        kind = export_format.value
        with replaced_folder(out, kind, f"flip synth site --format {kind}") as folder:
            export_site(profile, generate_site(profile, seed), folder, seed, images=images)
    typer.echo(f"wrote {patients} patients as {export_format.value} to {out}")


@app.command()
def tables(
    out: Annotated[
        Path, typer.Option(help="Folder to write one CSV per hospital into (replaced whole).")
    ],
    sites: Annotated[int, typer.Option(min=1, max=20, help="How many hospitals.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same rows.")] = 0,
) -> None:
    """Write flat, messy modelling tables (one CSV per hospital) for `flip fl run`.

    OUT is replaced whole: it must be new, empty or an earlier `flip synth tables` output.

    Example: flip synth tables --out tables --sites 4
    """
    from flip.synth import default_profiles
    from flip.synth.flat import write_table

    with one_line_errors():
        profiles = default_profiles(sites)
        with replaced_folder(out, "tables", "flip synth tables") as folder:
            for profile in profiles:
                write_table(profile, folder / f"{profile.name}.csv", seed)
    for profile in profiles:
        typer.echo(f"{profile.name}: {profile.n_patients} rows -> {out / profile.name}.csv")


@app.command()
def dermatology(
    out: Annotated[Path, typer.Option(help="Folder to write the world into (replaced whole).")],
    sites: Annotated[int, typer.Option(help="How many hospitals (1-20).")] = 4,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same world.")] = 0,
    size: Annotated[
        str, typer.Option(help="small (a demo on a laptop), default, or large.")
    ] = "default",
) -> None:
    """Write a dermatology world: each hospital's export in its own format (FHIR + DICOM
    photographs, HL7 v2 + pharmacy CSV + DICOM, warehouse CSV + JPEG manifest) under
    OUT/SITE, and the ground truth under OUT/truth (never inside an export). OUT is replaced
    whole: it must be new, empty or an earlier `flip synth dermatology` world.

    Example: flip synth dermatology --out derm --sites 4 --size small
    """
    from flip.synth.dermatology import write_world

    with one_line_errors():
        if not 1 <= sites <= 20:
            raise ValueError(f"--sites must be between 1 and 20, not {sites}")
        with replaced_folder(out, "dermatology", "flip synth dermatology") as folder:
            written = write_world(folder, sites, seed, size, progress=typer.echo)
    for w in written:
        counts = ", ".join(f"{v} {k}" for k, v in w.counts.items())
        typer.echo(f"{w.spec.name} ({w.spec.export}): {counts} -> {out / w.folder.name}")
    typer.echo(f"ground truth -> {out / 'truth'}; how to ingest each site -> {out / 'world.json'}")


@app.command()
def radiology(
    out: Annotated[Path, typer.Option(help="Folder to write the world into (replaced whole).")],
    sites: Annotated[int, typer.Option(help="How many hospitals (1-8).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same world.")] = 0,
    people: Annotated[
        int | None,
        typer.Option(min=1, max=100_000, help="Patients per site (default: each site's own)."),
    ] = None,
    slices: Annotated[int, typer.Option(help="Slices of each head CT (8-256).")] = 32,
    size: Annotated[int, typer.Option(help="Rows and columns of each slice (16-512).")] = 64,
) -> None:
    """Write a radiology world: each hospital's head CTs as DICOM (one file per slice, or one
    Enhanced CT object per study) under OUT/SITE/dicom, its records as a FHIR bundle under
    OUT/SITE/fhir, and each study's label under OUT/truth (never inside an export). OUT is
    replaced whole: it must be new, empty or an earlier `flip synth radiology` world.

    Example: flip synth radiology --out rad --sites 3 --slices 32
    """
    from flip.synth.radiology import write_world

    with one_line_errors(), replaced_folder(out, "radiology", "flip synth radiology") as folder:
        written = write_world(folder, sites, seed, people, slices, size)
    for w in written:
        typer.echo(
            f"{w.site.name} ({w.site.storage}): {w.studies} studies, {w.infarcts} with an "
            f"infarct, {w.files} DICOM files -> {out / w.folder.name}"
        )
    typer.echo(f"labels -> {out / 'truth'}")
