"""Runtimes for one task contract: local (one site, no network) and simulation (Flower + Ray)."""
