"""The starter vocabulary maps the dermatology world's verified codes to OMOP standard
concepts, so a cohort "psoriasis, started a biologic" counts on an ingested site."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from flip.data.cdm.store import open_store
from flip.data.cohort.definition import CohortDefinition, Criterion
from flip.data.cohort.sql import count_cohort
from flip.data.terminology import Vocabulary
from flip.synth.dermatology.codes import DIAGNOSES, DRUGS, LABS, LOINC, RXNORM, SNOMED

#: (system, code in the world) -> (OMOP concept id, domain), as checked against OHDSI material.
EXPECTED = {
    (SNOMED, DIAGNOSES["psoriasis"][0]): (140168, "Condition"),
    (SNOMED, DIAGNOSES["eczema"][0]): (133834, "Condition"),
    (LOINC, LABS["crp"][0]): (3020460, "Measurement"),
    (RXNORM, DRUGS["adalimumab"][0]): (1119119, "Drug"),
}


def test_the_worlds_verified_codes_map_to_standard_concepts(tmp_path):
    store = open_store(tmp_path / "store.duckdb")
    store.create()
    vocab = Vocabulary.from_store(store)
    store.close()
    for (system, code), (concept_id, domain) in EXPECTED.items():
        mapped = vocab.map(system, code)
        assert (mapped.concept_id, mapped.domain_id) == (concept_id, domain), (system, code)


@pytest.mark.slow
def test_psoriasis_with_adalimumab_counts_as_the_ground_truth_says(tiny_world, tmp_path):
    out, _ = tiny_world
    site = out / "st-aster"
    store = tmp_path / "st-aster.duckdb"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "flip", "site", "ingest", "fhir", str(site / "fhir")),
            *("--store", str(store), "--site-config", str(site / "site.yaml"), "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["quarantined"] == 0
    with (out / "truth" / "st-aster" / "persons.csv").open() as handle:
        people = list(csv.DictReader(handle))
    psoriasis = [p for p in people if p["diagnosis"] == "psoriasis"]
    # adalimumab started at baseline, or stopped before another biologic was started
    on_adalimumab = [
        p for p in psoriasis if p["started"] == "adalimumab" or p["prior_biologic"] == "1"
    ]
    condition = Criterion(table="condition_occurrence", concept_ids=[140168])
    drug = Criterion(table="drug_exposure", concept_ids=[1119119])
    s = open_store(str(store), read_only=True)
    try:
        assert count_cohort(s, CohortDefinition(name="pso", include=[condition])) == len(psoriasis)
        both = CohortDefinition(name="pso on adalimumab", include=[condition, drug])
        assert count_cohort(s, both) == len(on_adalimumab)
    finally:
        s.close()
    assert 0 < len(on_adalimumab) < len(psoriasis) or len(psoriasis) <= 2
