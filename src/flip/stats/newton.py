"""Federated Newton-Raphson: the combiner sums the sites' gradients and Hessians each step."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Site = Callable[[list[float]], dict]


class NotConverged(ValueError):
    """Newton's method did not converge (separation, or a singular information matrix)."""


def combine_step(partials: list[dict]) -> tuple[float, np.ndarray, np.ndarray]:
    """The sum of the sites' log-likelihoods, gradients and Hessians."""
    loglik = sum(p["loglik"] for p in partials)
    gradient = np.sum([p["gradient"] for p in partials], axis=0)
    hessian = np.sum([p["hessian"] for p in partials], axis=0)
    return loglik, gradient, hessian


def fit(sites: list[Site], n_params: int, max_steps: int = 50, tol: float = 1e-8) -> dict:
    """Maximise the summed log-likelihood from the sites' partials at each proposed beta;
    step-halving keeps every step uphill; converged when a step no longer moves beta.
    Returns beta, its covariance, loglik, steps."""
    beta = np.zeros(n_params)
    loglik, gradient, hessian = combine_step([site(beta.tolist()) for site in sites])
    for step in range(1, max_steps + 1):
        try:
            direction = -np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            raise NotConverged(
                "the information matrix is singular (a covariate is constant or collinear)"
            ) from None
        for _ in range(30):
            proposal = beta + direction
            new = combine_step([site(proposal.tolist()) for site in sites])
            if np.isfinite(new[0]) and new[0] >= loglik - 1e-12 * abs(loglik):
                break
            direction = direction / 2
        beta, (loglik, gradient, hessian) = proposal, new
        if np.max(np.abs(direction)) < tol * (1 + np.max(np.abs(beta))):
            return {
                "beta": beta,
                "covariance": np.linalg.inv(-hessian),
                "loglik": loglik,
                "steps": step,
            }
    raise NotConverged(f"Newton's method did not converge in {max_steps} steps (separation?)")
