"""The whole-command FHIR bench reports CPU seconds beside wall seconds (load on a shared
machine moves the wall clock far more than CPU time)."""

import os

import pytest

from flip.bench.ingest import command_env, fhir_command


def test_the_fhir_command_figures_give_cpu_seconds_and_their_ratio(tmp_path):
    figures = {f.name: f for f in fhir_command(tmp_path, patients=3, passes=1)}
    bare, flip = figures["bare loop, whole process, CPU"], figures["flip site ingest fhir, CPU"]
    assert bare.unit == flip.unit == "s"
    assert bare.value > 0 and flip.value > 0
    ratio = figures["flip / bare command CPU ratio"]
    assert ratio.value == pytest.approx(flip.value / bare.value)
    assert "flip / bare command time ratio" in figures


def test_both_sides_run_with_the_bytecode_cache_on_whatever_the_caller_says(monkeypatch):
    # an installer compiles the libraries the bare loop uses; FLIP's own modules are compiled
    # once too, not at every start, when the caller's environment turns the cache off
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("FLIP_BENCH_PROBE", "kept")
    env = command_env()
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert env["FLIP_BENCH_PROBE"] == "kept"
    assert os.environ["PYTHONDONTWRITEBYTECODE"] == "1"  # the caller's own is left as it was
