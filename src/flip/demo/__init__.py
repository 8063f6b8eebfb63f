"""The demo journey: synthetic hospitals -> stores -> hub -> approval -> federation -> report."""

from flip.demo.journey import DemoOptions, DemoResult, run_demo

__all__ = ["DemoOptions", "DemoResult", "run_demo"]
