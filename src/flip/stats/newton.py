"""Federated Newton-Raphson: the combiner sums the sites' gradients and Hessians each step.

The method is a state machine over JSON (`start`, then `advance` with the sites' partials at
`state["proposal"]` until the state holds a `result`), so a hub can run it one round of site
answers at a time; `fit` runs it in one process.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Site = Callable[[list[float]], dict]

#: Halvings of a step that goes downhill before it is taken anyway.
MAX_HALVINGS = 30


class NotConverged(ValueError):
    """Newton's method did not converge (separation, or a singular information matrix)."""


def combine_step(partials: list[dict]) -> tuple[float, np.ndarray, np.ndarray]:
    """The sum of the sites' log-likelihoods, gradients and Hessians."""
    loglik = sum(p["loglik"] for p in partials)
    gradient = np.sum([p["gradient"] for p in partials], axis=0)
    hessian = np.sum([p["hessian"] for p in partials], axis=0)
    return loglik, gradient, hessian


def start(n_params: int) -> dict:
    """The state before the first round: the sites evaluate at beta = 0."""
    return {"proposal": [0.0] * n_params, "beta": None, "steps": 0, "halvings": 0}


def _direction(hessian: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    try:
        return -np.linalg.solve(hessian, gradient)
    except np.linalg.LinAlgError:
        raise NotConverged(
            "the information matrix is singular (a covariate is constant or collinear)"
        ) from None


def advance(state: dict, partials: list[dict], max_steps: int = 50, tol: float = 1e-8) -> dict:
    """The next state from the sites' partials at `state["proposal"]`: step-halving keeps
    every step uphill; converged when a step no longer moves beta (then `result` holds beta,
    its covariance, loglik and steps)."""
    loglik, gradient, hessian = combine_step(partials)
    proposal = np.asarray(state["proposal"], dtype=float)
    if state["beta"] is not None:
        uphill = np.isfinite(loglik) and loglik >= state["loglik"] - 1e-12 * abs(state["loglik"])
        if not uphill and state["halvings"] < MAX_HALVINGS:
            direction = np.asarray(state["direction"]) / 2
            beta = np.asarray(state["beta"])
            return {
                **state,
                "proposal": (beta + direction).tolist(),
                "direction": direction.tolist(),
                "halvings": state["halvings"] + 1,
            }
        moved = np.max(np.abs(state["direction"]))
        if moved < tol * (1 + np.max(np.abs(proposal))):
            return {
                **state,
                "result": {
                    "beta": proposal.tolist(),
                    "covariance": np.linalg.inv(-hessian).tolist(),
                    "loglik": float(loglik),
                    "steps": state["steps"],
                },
            }
    if state["steps"] >= max_steps:
        raise NotConverged(f"Newton's method did not converge in {max_steps} steps (separation?)")
    direction = _direction(hessian, gradient)
    return {
        "beta": proposal.tolist(),
        "loglik": float(loglik),
        "direction": direction.tolist(),
        "proposal": (proposal + direction).tolist(),
        "steps": state["steps"] + 1,
        "halvings": 0,
    }


def fit(sites: list[Site], n_params: int, max_steps: int = 50, tol: float = 1e-8) -> dict:
    """Maximise the summed log-likelihood from the sites' partials at each proposed beta.
    Returns beta, its covariance (arrays), loglik, steps."""
    state = start(n_params)
    while "result" not in state:
        state = advance(state, [site(state["proposal"]) for site in sites], max_steps, tol)
    result = state["result"]
    return {
        **result,
        "beta": np.asarray(result["beta"]),
        "covariance": np.asarray(result["covariance"]),
    }
