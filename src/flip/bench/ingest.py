"""Ingest throughput and memory, each against a reference measured in the same run.

- FHIR NDJSON: FLIP's ingest (parse, validate, map, write to DuckDB) against a bare
  loop of orjson.loads + fhir.resources model_validate over the same lines, the two
  run in turn twice, each side's fastest kept.
- A US Core-like export (200 patients, ~8,800 resources, bench.uscore) through the whole
  `flip site ingest fhir` command, process start included, against the bare loop run as
  a process of its own on the same files (both with Python's bytecode cache on).
- CSV extract through its mapping into DuckDB: its data rows per second, the fastest of three
  runs, in process (start-up excluded) and as the whole `flip site ingest csv` command
  (process start included), and rows per CPU second of the writing and the reading process
  (steady under load).
- Peak RSS of a fresh process ingesting NDJSON at two sizes (streaming keeps it flat).
"""

from __future__ import annotations

import csv
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from fhir.resources.R4B import get_fhir_model_class

from flip.bench.uscore import write_export
from flip.data.cdm.store import open_store
from flip.data.ingest import ingest_path
from flip.synth import SiteProfile, generate_site
from flip.synth.export import export_site


@dataclass
class Figure:
    """One measured figure."""

    name: str
    value: float
    unit: str
    note: str = ""


def _export(folder: Path, fmt: str, patients: int, seed: int = 0) -> Path:
    profile = SiteProfile(
        name=f"bench-{fmt}", n_patients=patients, export_format=fmt, age_mean=60, smoker_rate=0.2
    )
    return export_site(profile, generate_site(profile, seed), folder, images=False)


def _store(path: Path):
    path.unlink(missing_ok=True)
    store = open_store(path)
    store.create()
    with store.engine.connect() as conn:
        conn.exec_driver_sql("SET threads = 1")
    return store


def bare_validate(folder: Path) -> tuple[int, float]:
    """(resources, seconds) for orjson + fhir.resources over every NDJSON line."""
    count, start = 0, time.perf_counter()
    for path in sorted(folder.glob("*.ndjson")):
        with path.open("rb") as handle:
            for line in handle:
                resource_ = orjson.loads(line)
                get_fhir_model_class(resource_["resourceType"]).model_validate(resource_)
                count += 1
    return count, time.perf_counter() - start


def _flip_fhir(folder: Path, store_path: Path) -> tuple[int, float]:
    """(resources read, seconds) for FLIP's ingest of an NDJSON folder into a new store."""
    store = _store(store_path)
    start = time.perf_counter()
    report = ingest_path(store, "fhir", folder)
    seconds = time.perf_counter() - start
    store.close()
    return report.read, seconds


def fhir_throughput(work: Path, patients: int, passes: int = 2) -> list[Figure]:
    """FLIP's FHIR NDJSON ingest against the bare parse-and-validate loop.

    The two alternate `passes` times and each keeps its fastest, so a spell of load
    on a shared machine does not land on one side only.
    """
    folder = _export(work / "ndjson", "fhir-ndjson", patients)
    bare_seconds = flip_seconds = float("inf")
    for _ in range(passes):
        n, seconds = bare_validate(folder)
        bare_seconds = min(bare_seconds, seconds)
        read, seconds = _flip_fhir(folder, work / "fhir.duckdb")
        flip_seconds = min(flip_seconds, seconds)
    return [
        Figure("fhir resources", n, "resources", f"{patients} patients"),
        Figure("bare orjson+fhir.resources", n / bare_seconds, "resources/s"),
        Figure("flip ingest fhir", read / flip_seconds, "resources/s", "validate, map, write"),
        Figure("flip / bare time ratio", flip_seconds / bare_seconds, "x", "aim <= 1.5"),
    ]


#: The bare loop as a program of its own: what any FHIR pipeline in Python pays at least.
BARE_PROGRAM = """
import sys
from pathlib import Path

import orjson
from fhir.resources.R4B import get_fhir_model_class

for path in sorted(Path(sys.argv[1]).glob("*.ndjson")):
    with path.open("rb") as handle:
        for line in handle:
            resource = orjson.loads(line)
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
"""


def command_env() -> dict[str, str]:
    """The environment the timed commands run in: this one with Python's bytecode cache on
    whatever PYTHONDONTWRITEBYTECODE says, so that both sides load compiled modules as an
    installed package does (an installer compiles the libraries the bare loop uses; without
    the cache, FLIP's own modules alone would be compiled again at every start)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of a command from process start to exit, run in `cwd` in
    `command_env()`; it must succeed. CPU is user + system time of the process and of the
    children it waited for (a reading process it forked)."""
    cpu = _cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=cwd, env=command_env())
    return time.perf_counter() - start, _cpu_seconds(resource.RUSAGE_CHILDREN) - cpu


def fhir_command(work: Path, patients: int = 200, passes: int = 3) -> list[Figure]:
    """`flip site ingest fhir` on a US Core-like export as a whole command, into a store
    `flip site init` made, against the bare loop as a process; the two alternate `passes`
    times and each keeps its fastest wall time and its least CPU time (the first pass also
    fills the bytecode cache: see command_env)."""
    folder = work / "uscore"
    resources = write_export(folder, patients)
    store = work / "uscore.duckdb"
    flip = [sys.executable, "-m", "flip", "site", "ingest", "fhir", str(folder)]
    flip += ["--store", str(store), "--json"]  # run in `work`, where no site.yaml is
    bare = [sys.executable, "-c", BARE_PROGRAM, str(folder)]
    bare_seconds = flip_seconds = bare_cpu = flip_cpu = float("inf")
    init = [sys.executable, "-m", "flip", "site", "init", "--store", str(store)]
    for _ in range(passes):
        wall, cpu = _timed(bare, work)
        bare_seconds, bare_cpu = min(bare_seconds, wall), min(bare_cpu, cpu)
        store.unlink(missing_ok=True)
        subprocess.run(init, check=True, capture_output=True, env=command_env())
        wall, cpu = _timed(flip, work)
        flip_seconds, flip_cpu = min(flip_seconds, wall), min(flip_cpu, cpu)
    return [
        Figure("US Core-like export", resources, "resources", f"{patients} patients"),
        Figure("bare loop, whole process", bare_seconds, "s"),
        Figure("flip site ingest fhir, whole command", flip_seconds, "s"),
        Figure(
            "flip / bare command time ratio",
            flip_seconds / bare_seconds,
            "x",
            "aim <= 1.5; the bare loop validates more (see docs/operations.md)",
        ),
        Figure("bare loop, whole process, CPU", bare_cpu, "s", "user + system"),
        Figure("flip site ingest fhir, CPU", flip_cpu, "s", "both processes: read; map, write"),
        Figure(
            "flip / bare command CPU ratio",
            flip_cpu / bare_cpu,
            "x",
            "what load on a shared machine moves least",
        ),
    ]


def bare_csv(folder: Path) -> tuple[int, float]:
    """(rows, seconds) for Python's csv module reading every CSV file of a folder."""
    rows, start = 0, time.perf_counter()
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            rows += sum(1 for _ in csv.reader(handle)) - 1
    return rows, time.perf_counter() - start


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def csv_throughput(work: Path, patients: int, passes: int = 3) -> list[Figure]:
    """A CSV extract through its YAML mapping into DuckDB, against a bare csv.reader pass.

    Rows are the data rows of the extract's CSV files (what csv.reader counts), whatever
    number of records the mapping makes of them. The two alternate `passes` times and each
    keeps its fastest: `ingest_path` in this process (store opened, start-up excluded), then
    the whole `flip site ingest csv` command, process start included. Beside wall-clock
    rows/s, the CPU seconds of the writing process and of the reading child give rows per
    CPU second, which other work on a shared machine barely moves.
    """
    folder = _export(work / "csv", "csv", patients)
    bare_seconds = seconds = writer = reader = float("inf")
    for _ in range(passes):
        rows, elapsed = bare_csv(folder)
        bare_seconds = min(bare_seconds, elapsed)
        store = _store(work / "csv.duckdb")
        own, children = _cpu_seconds(resource.RUSAGE_SELF), _cpu_seconds(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        report = ingest_path(store, "csv", folder)
        seconds = min(seconds, time.perf_counter() - start)
        writer = min(writer, _cpu_seconds(resource.RUSAGE_SELF) - own)
        reader = min(reader, _cpu_seconds(resource.RUSAGE_CHILDREN) - children)
        store.close()
    command = csv_command(work, folder, passes)
    return [
        Figure("csv rows", rows, "rows", f"{patients} patients; {report.read:,} records"),
        Figure("bare csv.reader", rows / bare_seconds, "rows/s", "parse only"),
        Figure(
            "flip ingest csv, in process",
            rows / seconds,
            "rows/s",
            f"aim >= 50,000; start-up excluded; read in a second process; best of {passes}",
        ),
        Figure("flip / bare csv time ratio", seconds / bare_seconds, "x"),
        Figure(
            "flip site ingest csv, whole command",
            rows / command,
            "rows/s",
            f"aim >= 50,000; process start included ({command:.1f} s); best of {passes}",
        ),
        Figure("csv writer, per CPU second", rows / writer, "rows/s", "map, check, write"),
        Figure(
            "csv reader, per CPU second",
            rows / reader if reader > 0 else 0.0,
            "rows/s",
            "parse, mapping entries, send (0: read in-process)",
        ),
    ]


def csv_command(work: Path, folder: Path, passes: int = 3) -> float:
    """Seconds of the whole `flip site ingest csv` command on `folder` (the fastest of
    `passes`), each into a new store `flip site init` made."""
    store = work / "csv-command.duckdb"
    init = [sys.executable, "-m", "flip", "site", "init", "--store", str(store)]
    flip = [sys.executable, "-m", "flip", "site", "ingest", "csv", str(folder)]
    flip += ["--store", str(store), "--json"]  # run in `work`, where no site.yaml is
    best = float("inf")
    for _ in range(passes):
        store.unlink(missing_ok=True)
        subprocess.run(init, check=True, capture_output=True, env=command_env())
        best = min(best, _timed(flip, work)[0])
    return best


def peak_rss(work: Path, patients: int) -> Figure:
    """Peak RSS of a fresh process that ingests an NDJSON export of `patients`."""
    folder = _export(work / f"rss-{patients}", "fhir-ndjson", patients)
    size = sum(p.stat().st_size for p in folder.iterdir())
    code = (
        "import json,resource,sys;from pathlib import Path;"
        "from flip.bench.ingest import _store;from flip.data.ingest import ingest_path;"
        "s=_store(Path(sys.argv[2]));ingest_path(s,'fhir',Path(sys.argv[1]));s.close();"
        "print('peak_rss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder), str(work / f"rss-{patients}.duckdb")],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        reason = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the RSS probe of {patients} patients failed: {reason}")
    return Figure(
        f"peak RSS, {size / 1e6:.0f} MB of NDJSON",
        _peak_rss_kib(out.stdout) / 1024,
        "MiB",
        f"{patients} patients",
    )


def _peak_rss_kib(stdout: str) -> int:
    """The child's peak RSS from its output: the line it printed, whatever else (a DuckDB
    progress bar on a slow query) went to stdout around it."""
    found = re.findall(r"^peak_rss (\d+)$", stdout.replace("\r", "\n"), re.MULTILINE)
    if not found:
        raise RuntimeError(f"the RSS probe printed no figure: {stdout[-200:]!r}")
    return int(found[-1])


def run(work: Path, patients: int = 2000, passes: int = 3) -> list[Figure]:
    """Every ingest figure; `patients` sets the size of the throughput runs, `passes` how
    many times each timed pair alternates (the in-process FHIR pair at most twice)."""
    work = work.resolve()  # the commands run in it, and name files under it
    work.mkdir(parents=True, exist_ok=True)
    figures = fhir_throughput(work, patients, min(passes, 2))
    figures += fhir_command(work, passes=passes)
    figures += csv_throughput(work, patients * 4, passes)
    figures += [peak_rss(work, patients), peak_rss(work, patients * 4)]
    return figures
