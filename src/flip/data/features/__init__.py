"""Cohort -> training dataset."""

from flip.data.features.tabular import Feature, TabularData, TabularSpec, extract_tabular

__all__ = ["Feature", "TabularData", "TabularSpec", "extract_tabular"]
