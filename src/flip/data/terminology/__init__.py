"""Vocabularies and code mapping: Athena loaders and the in-memory concept index."""

from flip.data.terminology.athena import load_athena, starter_folder
from flip.data.terminology.vocabulary import Mapping, Vocabulary, system_vocabulary

__all__ = ["Mapping", "Vocabulary", "load_athena", "starter_folder", "system_vocabulary"]
