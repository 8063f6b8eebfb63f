"""Cohort definitions, their compilation to SQL, and disclosure control on what leaves a site."""

from flip.data.cohort.definition import CohortDefinition, Criterion
from flip.data.cohort.disclosure import SiteCount, rounded, suppress, suppress_bins
from flip.data.cohort.sql import cohort_histograms, count_cohort, person_ids

__all__ = [
    "CohortDefinition",
    "Criterion",
    "SiteCount",
    "cohort_histograms",
    "count_cohort",
    "person_ids",
    "rounded",
    "suppress",
    "suppress_bins",
]
