"""Cohort definitions, their compilation to SQL, and disclosure control on what leaves a site."""

from flip.data.cohort.definition import CohortDefinition, Criterion
from flip.data.cohort.disclosure import SiteCount, suppress
from flip.data.cohort.sql import count_cohort, person_ids

__all__ = ["CohortDefinition", "Criterion", "SiteCount", "count_cohort", "person_ids", "suppress"]
