"""FLIP: standardise hospital data to OMOP CDM and train models across sites."""

__version__ = "0.1.0"
