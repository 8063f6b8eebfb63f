"""The whole-command FHIR bench reports CPU seconds beside wall seconds (load on a shared
machine moves the wall clock far more than CPU time)."""

import pytest

from flip.bench.ingest import fhir_command


def test_the_fhir_command_figures_give_cpu_seconds_and_their_ratio(tmp_path):
    figures = {f.name: f for f in fhir_command(tmp_path, patients=3, passes=1)}
    bare, flip = figures["bare loop, whole process, CPU"], figures["flip site ingest fhir, CPU"]
    assert bare.unit == flip.unit == "s"
    assert bare.value > 0 and flip.value > 0
    ratio = figures["flip / bare command CPU ratio"]
    assert ratio.value == pytest.approx(flip.value / bare.value)
    assert "flip / bare command time ratio" in figures
