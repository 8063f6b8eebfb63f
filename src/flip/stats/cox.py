"""Cox proportional hazards, stratified by site, Breslow ties: each site's partial is the
gradient and Hessian of its own partial likelihood at the proposed coefficients."""

from __future__ import annotations

import numpy as np

from flip.stats.suppression import hidden, is_small


def cox_partial(time: np.ndarray, event: np.ndarray, x: np.ndarray, beta: list[float]) -> dict:
    """Breslow log partial likelihood, its gradient and Hessian on one site's rows."""
    order = np.argsort(time, kind="stable")
    time, event, x = time[order], event[order].astype(bool), x[order]
    eta = x @ np.asarray(beta, dtype=float)
    shift = eta.max() if len(eta) else 0.0
    w = np.exp(eta - shift)
    s0 = np.cumsum(w[::-1])[::-1]
    s1 = np.cumsum((w[:, None] * x)[::-1], axis=0)[::-1]
    s2 = np.cumsum((w[:, None, None] * x[:, :, None] * x[:, None, :])[::-1], axis=0)[::-1]
    first = np.searchsorted(time, time[event], side="left")
    s0e, s1e, s2e = s0[first], s1[first], s2[first]
    mean = s1e / s0e[:, None]
    loglik = float((eta[event] - shift - np.log(s0e)).sum())
    gradient = (x[event] - mean).sum(axis=0)
    hessian = -(s2e / s0e[:, None, None] - mean[:, :, None] * mean[:, None, :]).sum(axis=0)
    return {"loglik": loglik, "gradient": gradient.tolist(), "hessian": hessian.tolist()}


def cox_counts(event: np.ndarray, min_cell: int) -> dict:
    """A site's released counts for the Cox model: persons and events (small ones hidden)."""
    n, events = len(event), int(event.sum())
    return {
        "n": hidden(min_cell) if is_small(n, min_cell) else n,
        "events": hidden(min_cell) if is_small(events, min_cell) else events,
    }
