"""Cohort -> training dataset."""

from flip.data.features.tabular import (
    Feature,
    Scaling,
    TabularData,
    TabularSpec,
    extract_raw,
    extract_tabular,
)

__all__ = ["Feature", "Scaling", "TabularData", "TabularSpec", "extract_raw", "extract_tabular"]
