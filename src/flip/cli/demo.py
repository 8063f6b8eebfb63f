"""`flip demo`: the whole federated journey on embedded defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flip.cli.errors import one_line_errors

app = typer.Typer(invoke_without_command=True)


@app.callback()
def demo(
    ctx: typer.Context,
    sites: Annotated[
        int, typer.Option(help="How many synthetic hospitals (the last one is small).")
    ] = 3,
    rounds: Annotated[int, typer.Option(help="Federated rounds of FedAvg.")] = 10,
    out: Annotated[
        Path, typer.Option(help="Folder for stores, hub database and the report.")
    ] = Path("demo-out"),
    seed: Annotated[int, typer.Option(help="Seed for the synthetic world and the splits.")] = 0,
    run: Annotated[
        bool,
        typer.Option(help="Run the journey (--no-run with --serve serves an earlier run's OUT)."),
    ] = True,
    serve: Annotated[
        bool,
        typer.Option(
            help="Then serve the hub's web app and each site's console on free loopback "
            "ports, with the demo's sign-ins, until Ctrl-C."
        ),
    ] = False,
) -> None:
    """Run the federated journey: synthetic hospitals -> OMOP stores -> hub -> approval -> training.

    Writes OUT/results.json (per-site AUROC of local-only, federated and pooled
    models), OUT/report.md and OUT/auroc.png, and OUT/demo-credentials.json: the
    demo's sign-ins for the hub's web app and the site consoles. Needs no server:
    the hub runs on 127.0.0.1 for the length of the demo. Open it in a browser
    with `flip demo --serve` (after the journey) or `flip demo --serve --no-run`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from flip.demo.options import DemoError, DemoOptions

    if not run and not serve:
        raise typer.BadParameter("nothing to do: --no-run needs --serve", param_hint="--run")
    options = DemoOptions(sites=sites, rounds=rounds, out=out, seed=seed)
    if run:
        with one_line_errors(DemoError):
            options.check()
            from flip.demo.journey import run_demo

            run_demo(options)
    if serve:
        from flip.demo.serve import ServeError, serve_until_interrupted

        with one_line_errors(ServeError):
            serve_until_interrupted(out, typer.echo)


@app.command("dermatology")
def dermatology(
    sites: Annotated[int, typer.Option(help="How many synthetic hospitals.")] = 4,
    size: Annotated[
        str, typer.Option(help="World size: small (CPU, minutes), default or large.")
    ] = "small",
    out: Annotated[
        Path, typer.Option(help="Folder for the world, the site stores and the report.")
    ] = Path("demo-dermatology"),
    seed: Annotated[int, typer.Option(help="Seed for the world, the splits and the models.")] = 0,
    rounds: Annotated[int, typer.Option(help="FedAvg rounds, one local epoch each.")] = 20,
    image_weights: Annotated[
        Path | None,
        typer.Option(
            help="Pretrained weights of the photograph network (a torch state dict of MONAI's "
            "ResNet-10 at widths 16-128): each site registers them and starts from them."
        ),
    ] = None,
) -> None:
    """Run the dermatology journey: exports -> connectors -> cohort -> approvals -> federated
    biomarker and response models on Flower (each site's ClientApp checks its approval, makes
    its features and fine-tunes MiniLM with LoRA) -> local-only and pooled references -> report.

    Writes OUT/results.json, OUT/report.html (self-contained) and its figures as PNG files.
    The PACS site's photographs are stored in a local Orthanc (started on a free loopback port,
    stopped at the end) and read over DICOMweb; without Orthanc, from its DICOM files.

    Example: flip demo dermatology --sites 4 --size small --out demo-dermatology
    """
    from flip.demo.dermatology.options import DermatologyDemoError, DermatologyOptions

    options = DermatologyOptions(
        sites=sites, size=size, out=out, seed=seed, rounds=rounds, image_weights=image_weights
    )
    with one_line_errors(DermatologyDemoError):
        options.check()
        from flip.demo.dermatology.journey import run_dermatology

        run_dermatology(options)


@app.command("radiology")
def radiology(
    sites: Annotated[int, typer.Option(help="How many synthetic hospitals (1-8).")] = 3,
    out: Annotated[
        Path, typer.Option(help="Folder for the world, the PACSs, the site stores and results.")
    ] = Path("demo-radiology"),
    seed: Annotated[int, typer.Option(help="Seed for the world, the splits and the model.")] = 0,
    rounds: Annotated[int, typer.Option(help="Federated rounds of FedAvg.")] = 4,
    people: Annotated[
        int | None, typer.Option(min=4, help="Patients per site (default: each site's own).")
    ] = None,
    network: Annotated[
        str, typer.Option(help="The MONAI 3D network: densenet-small, small-cnn, resnet18…")
    ] = "densenet-small",
) -> None:
    """Run the radiology journey: head CTs in each hospital's PACS (a local Orthanc) ->
    DICOMweb ingest -> approvals -> volumes read over WADO-RS and de-identified at each site ->
    a federated 3D network -> AUROC at each site (OUT/results.json). Needs Orthanc.

    Example: flip demo radiology --sites 3 --rounds 4 --out demo-radiology
    """
    from flip.demo.radiology import RadiologyDemoError, RadiologyOptions, run_radiology

    with one_line_errors(RadiologyDemoError):
        run_radiology(
            RadiologyOptions(
                sites=sites, out=out, seed=seed, rounds=rounds, people=people, network=network
            )
        )
