"""Linear and logistic regression: exact from sufficient statistics (linear, one round) or by
federated Newton/IRLS (logistic); each site's partial is a few sums over its rows."""

from __future__ import annotations

import math

import numpy as np


def linear_partial(x: np.ndarray, y: np.ndarray) -> dict:
    """X'X, X'y, y'y and n on one site's rows (x includes the intercept column)."""
    return {
        "n": len(y),
        "xtx": (x.T @ x).tolist(),
        "xty": (x.T @ y).tolist(),
        "yty": float(y @ y),
    }


def linear_fit(partials: list[dict]) -> dict:
    """Ordinary least squares from the summed sufficient statistics, with classical SEs."""
    n = sum(p["n"] for p in partials)
    xtx = np.sum([p["xtx"] for p in partials], axis=0)
    xty = np.sum([p["xty"] for p in partials], axis=0)
    yty = sum(p["yty"] for p in partials)
    if n <= len(xty):
        raise ValueError(f"{n} rows cannot fit {len(xty)} coefficients")
    try:
        inverse = np.linalg.inv(xtx)
    except np.linalg.LinAlgError:
        raise ValueError("X'X is singular (a covariate is constant or collinear)") from None
    beta = inverse @ xty
    rss = float(yty - 2 * beta @ xty + beta @ xtx @ beta)
    sigma2 = max(rss, 0.0) / (n - len(beta))
    return {
        "beta": beta,
        "covariance": sigma2 * inverse,
        "sigma": math.sqrt(sigma2),
    }


def logistic_partial(x: np.ndarray, y: np.ndarray, beta: list[float]) -> dict:
    """Bernoulli log-likelihood, gradient and Hessian at beta on one site's rows."""
    eta = x @ np.asarray(beta, dtype=float)
    p = np.exp(-np.logaddexp(0, -eta))
    loglik = float((y * eta - np.logaddexp(0, eta)).sum())
    return {
        "loglik": loglik,
        "gradient": (x.T @ (y - p)).tolist(),
        "hessian": (-(x.T * (p * (1 - p))) @ x).tolist(),
    }
