"""What a site releases for a cohort: its count and histograms, small cells suppressed."""

from __future__ import annotations

from flip.data.cdm.store import Store
from flip.data.cohort.definition import CohortDefinition
from flip.data.cohort.disclosure import SiteCount, suppress, suppress_bins
from flip.data.cohort.sql import cohort_histograms, count_cohort


def release(store: Store, definition: CohortDefinition, threshold: int) -> SiteCount:
    """The count and, when the count itself is released, the asked-for histograms."""
    released = suppress(count_cohort(store, definition), threshold)
    if definition.histograms and not released.suppressed:
        released.histograms = {
            by: suppress_bins(bins, threshold)
            for by, bins in cohort_histograms(store, definition).items()
        }
    return released
