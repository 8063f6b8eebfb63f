"""Linear and logistic regression: exact from centred sufficient statistics (linear, one
round) or by federated Newton/IRLS (logistic); each site's partial is a few sums over its rows."""

from __future__ import annotations

import math

import numpy as np


def linear_partial(x: np.ndarray, y: np.ndarray) -> dict:
    """n, the means of x's columns and y, and their co-moments about those means on one site's
    rows (x without the intercept column): centred, so no sum of squares of large values."""
    z = np.column_stack([x, y]) if len(y) else np.empty((0, x.shape[1] + 1))
    mean = z.mean(axis=0) if len(y) else np.zeros(z.shape[1])
    centred = z - mean
    return {"n": len(y), "mean": mean.tolist(), "comoment": (centred.T @ centred).tolist()}


def _merge(partials: list[dict]) -> tuple[int, np.ndarray, np.ndarray]:
    """Pooled n, means and co-moments (Chan et al.'s pairwise merge, no cancellation)."""
    sizes = np.array([p["n"] for p in partials], dtype=float)
    means = np.array([p["mean"] for p in partials], dtype=float)
    n = int(sizes.sum())
    mean = sizes @ means / n
    shift = means - mean
    comoment = np.sum([p["comoment"] for p in partials], axis=0)
    return n, mean, comoment + (shift.T * sizes) @ shift


def linear_fit(partials: list[dict]) -> dict:
    """Ordinary least squares with an intercept (first coefficient) from the pooled centred
    co-moments, with classical SEs; the centred, scaled system keeps them exact at large means."""
    n, mean, comoment = _merge(partials)
    p = len(mean) - 1
    if n <= p + 1:
        raise ValueError(f"{n} rows cannot fit {p + 1} coefficients")
    sxx, sxy, syy = comoment[:p, :p], comoment[:p, p], comoment[p, p]
    scale = np.sqrt(np.diag(sxx))
    if (scale == 0).any():
        raise ValueError(f"covariate {int(np.argmin(scale)) + 1} is constant")
    try:
        inverse = np.linalg.inv(sxx / np.outer(scale, scale)) / np.outer(scale, scale)
    except np.linalg.LinAlgError:
        raise ValueError("the covariates are collinear") from None
    slopes = inverse @ sxy
    rss = max(float(syy - sxy @ slopes), 0.0)
    sigma2 = rss / (n - p - 1)
    mx = mean[:p]
    covariance = np.empty((p + 1, p + 1))
    covariance[0, 0] = 1 / n + mx @ inverse @ mx
    covariance[0, 1:] = covariance[1:, 0] = -inverse @ mx
    covariance[1:, 1:] = inverse
    return {
        "beta": np.concatenate([[mean[p] - mx @ slopes], slopes]),
        "covariance": sigma2 * covariance,
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
