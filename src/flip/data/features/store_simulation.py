"""An analysis on sites' stores in one process, as enrolled sites and the hub run it (`flip
analyse stores`): each site's release from its own store (`store_analysis`), combined round
by round (`flip.stats.federated`). No ledger, approval or differencing guard: whoever runs
it holds every store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flip.data.features.store_analysis import AnalysisSpec, Declined, extract, site_release
from flip.stats.federated import combine_round

if TYPE_CHECKING:
    from flip.data.cdm.store import Store


def run_on_stores(spec: AnalysisSpec, stores: dict[str, Store], min_cell: int) -> dict:
    """The combined result, as `flip analysis results` shows it, and why each site that
    took no part declined: `{"result": ..., "declined": {SITE: reason}}`. ValueError when
    no site takes part or a model's Newton round fails."""
    body = spec.body()
    cohorts = {name: extract(store, spec) for name, store in stores.items()}
    releases, declined = {}, {}
    for name, cohort in cohorts.items():
        try:
            releases[name] = site_release(cohort, spec, 0, None, min_cell)
        except Declined as exc:
            declined[name] = str(exc)
    if not releases:
        raise ValueError(f"no site took part: {declined}")
    state = combine_round(body, {"round": 0}, releases)
    while "result" not in state:
        proposal = state["newton"]["proposal"]
        releases = {
            name: site_release(cohorts[name], spec, state["round"], proposal, min_cell)
            for name in state["sites"]
        }
        state = combine_round(body, state, releases)
    return {"result": state["result"], "declined": declined}
