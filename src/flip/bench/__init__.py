"""Benchmarks behind `flip bench …`: they print figures, never pass or fail."""
