"""OHDSI Circe (ATLAS) cohort JSON: detection, the supported subset, running it on the store
through ohdsi-circepy, attrition, and export of FLIP's own definitions to Circe."""

from flip.data.cohort.circe.definition import CirceDefinition, is_circe, load_definition
from flip.data.cohort.circe.supported import UnsupportedCirce

__all__ = ["CirceDefinition", "UnsupportedCirce", "is_circe", "load_definition"]
