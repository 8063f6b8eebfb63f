"""Pure federated-statistics math: per-site partials (plain JSON dicts) -> combined results.

A leaf: imports nothing from `flip`. Sites compute partials; whoever combines them (the hub,
or `flip analyse` in simulation) sees only what a partial holds. See docs/analytics.md.
"""
