"""Synthetic multi-site hospital data for the demo and the tests."""

from flip.synth.world import Patient, SiteProfile, default_profiles, generate_site

__all__ = ["Patient", "SiteProfile", "default_profiles", "generate_site"]
