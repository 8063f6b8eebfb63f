"""The site's data layer: sources, terminology, the OMOP CDM store, cohorts and features.

Nothing in this package talks to the hub.
"""
