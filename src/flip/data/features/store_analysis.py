"""A federated analysis at a site: its spec, and the site's release computed on its store.

The cohort and its columns are extracted as a tabular task extracts them (`extract_raw`:
everyone with an entry event who has not opted out, each feature before the entry date, the
outcome after it); a spec with a Circe `cohort` takes its members instead, each entering
at their first cohort start date. What leaves is `flip.stats` partials under the site's
smallest cell; `flip.stats.federated` says what each round releases and how they combine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flip.data.cohort.circe.definition import CirceDefinition
from flip.data.features.tabular import TabularData, TabularSpec
from flip.stats import cox, describe, regression, survival
from flip.stats.federated import INTERCEPT, spec_hash, terms
from flip.stats.model_cells import model_withheld
from flip.stats.suppression import WITHHELD, hidden, is_small

if TYPE_CHECKING:
    from collections.abc import Callable

    from flip.data.cdm.store import Store

#: Feature sources whose values are 0/1: Table 1 counts them as categories.
BINARY_SOURCES = frozenset({"male", "condition", "observation"})

#: The largest |x'beta| a Newton proposal may give one of the site's rows.
MAX_LINEAR_PREDICTOR = 50.0


class Declined(ValueError):
    """The site takes no part in this round; the message says why (it goes to the hub)."""


class AnalysisSpec(BaseModel):
    """What an analysis computes on which cohort: Table 1 of the features and outcome,
    survival (Kaplan-Meier; Cox on `covariates`) or a regression of the outcome."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["table1", "survival", "regression"]
    data: TabularSpec
    covariates: list[str] | None = Field(
        None, description="Features in the Cox or regression model; None: every feature."
    )
    family: Literal["linear", "logistic"] | None = Field(
        None, description="regression: logistic for a binary outcome, linear for a value."
    )
    time_bin: float = Field(30.0, gt=0, description="survival: days sites round follow-up up to.")
    cohort: CirceDefinition | None = Field(
        None,
        description="A Circe (ATLAS) cohort: its persons, each from their first cohort start "
        "date, are the analysis's rows instead of those with an entry event of `data`.",
    )

    @model_validator(mode="after")
    def _fits_the_outcome(self) -> AnalysisSpec:
        names = [f.name for f in self.data.features]
        if self.data.text is not None or self.data.image is not None:
            raise ValueError("an analysis reads tabular features only (no text or image)")
        unknown = sorted(set(self.covariates or []) - set(names))
        if unknown:
            raise ValueError(f"covariates {', '.join(unknown)} are not features of the cohort")
        outcome = self.data.outcome
        if self.kind == "survival" and outcome != "time-to-event":
            raise ValueError("survival needs a time-to-event outcome")
        if self.kind == "regression":
            family = {"binary": "logistic", "regression": "linear"}.get(outcome)
            if family is None:
                raise ValueError("regression needs a binary or regression (value) outcome")
            if self.family not in (None, family):
                raise ValueError(f"a {outcome} outcome takes {family} regression")
            self.family = family
            self.covariates = names if self.covariates is None else self.covariates
        elif self.kind == "survival" and self.covariates is None:
            self.covariates = []
        return self

    def body(self) -> dict:
        """The spec as JSON, as it is hashed and sent (without `cohort` when there is none:
        the hash of an analysis of entry events is as before)."""
        return self.model_dump(mode="json", exclude={"cohort"} if self.cohort is None else None)

    def digest(self) -> str:
        """The SHA-256 a site approves."""
        return spec_hash(self.body())


def site_release(
    data: TabularData,
    spec: AnalysisSpec,
    round_: int,
    proposal: list[float] | None,
    min_cell: int,
) -> dict:
    """This site's release for one round of the analysis (see `flip.stats.federated`), from
    its cohort as `extract(store, spec)` read it."""
    names = data.feature_names
    if round_ > 0 and not (terms(spec.body()) and spec.family != "linear"):
        raise Declined(f"this {spec.kind} analysis takes no Newton rounds")
    if spec.kind == "table1":
        return {"columns": _table1(spec, data.x, data.y, names, min_cell)}
    columns = [names.index(c) for c in (spec.covariates or [])]
    x = data.x[:, columns].astype(float)
    if spec.kind == "survival":
        t, e = data.y[:, 0].astype(float), data.y[:, 1].astype(float)
        keep = ~np.isnan(t) & ~np.isnan(e) & ~np.isnan(x).any(axis=1)
        t, e, x = t[keep], e[keep], x[keep]
        design = np.column_stack([x, e])
        withheld = model_withheld(design, [*(spec.covariates or []), "event"], min_cell)
        if round_ > 0:
            _take_part(withheld)
            _check_proposal(x, proposal, "cox", min_cell)
            return {"newton": cox.cox_partial(t, e, x, proposal)}
        enough = bool(terms(spec.body())) and withheld is None
        return {
            "km": survival.km_partial(t, e, spec.time_bin, min_cell),
            "cox": cox.cox_partial(t, e, x, [0.0] * x.shape[1]) if enough else None,
            "counts": cox.cox_counts(e, min_cell) if enough else None,
            "left_out": _count(int((~keep).sum()), min_cell),
        }
    x = np.hstack([np.ones((len(x), 1)), x])
    y = data.y.astype(float)
    keep = ~np.isnan(y) & ~np.isnan(x).any(axis=1)
    x, y = x[keep], y[keep]
    design, names = x, [INTERCEPT, *(spec.covariates or [])]
    if spec.family == "logistic":
        design, names = np.column_stack([x, y]), [*names, "outcome"]
    withheld = model_withheld(design, names, min_cell)
    if round_ > 0:
        _take_part(withheld)
        _check_proposal(x, proposal, "logistic", min_cell)
        return {"newton": regression.logistic_partial(x, y, proposal)}
    if withheld:
        return {"withheld": True, "left_out": WITHHELD, "n": 0}
    out = {"withheld": False, "left_out": _count(int((~keep).sum()), min_cell), "n": len(y)}
    if spec.family == "linear":
        return out | {"linear": regression.linear_partial(x[:, 1:], y)}
    return out | {"newton": regression.logistic_partial(x, y, [0.0] * x.shape[1])}


def released_sets(data: TabularData, spec: AnalysisSpec, min_cell: int) -> list[frozenset[int]]:
    """The sets of persons whose counts or sums the analysis's first round releases, those
    it always shows first: its cohort, and per Table 1 column the persons with a value (and
    with each level of a 0/1 column); for a model, the complete rows (and those with the
    event or outcome), then its cohort; for survival, also at each end of a Kaplan-Meier
    bin it releases those followed up to it, and those with the event by then (two grids a
    few persons apart would tell those persons' times)."""
    ids = np.asarray(data.person_ids)

    def rows(mask: np.ndarray) -> frozenset[int]:
        return frozenset(ids[mask].tolist())

    sets = [frozenset(ids.tolist())]
    if spec.kind == "harmonisation":
        return sets
    if spec.kind == "table1":
        columns = [data.x[:, i].astype(float) for i in range(data.x.shape[1])]
        columns += [data.y[:, j] for j in range(2)] if data.y.ndim == 2 else [data.y]
        for values in (np.asarray(c, dtype=float) for c in columns):
            present = ~np.isnan(values)
            sets.append(rows(present))
            if np.isin(values[present], (0.0, 1.0)).all():
                sets += [rows(values == 1.0), rows(values == 0.0)]
        return sets
    x = data.x[:, [data.feature_names.index(c) for c in spec.covariates or []]].astype(float)
    y = np.asarray(data.y, dtype=float).reshape(len(ids), -1)
    complete = ~np.isnan(x).any(axis=1) & ~np.isnan(y).any(axis=1)
    flag = y[:, -1] if spec.kind == "survival" or spec.family == "logistic" else None
    with_flag = [] if flag is None else [rows(complete & (flag == 1.0))]
    binned = _bin_sets(y, complete, spec, min_cell, rows) if spec.kind == "survival" else []
    return [rows(complete), *with_flag, *sets, *binned]


def _bin_sets(
    y: np.ndarray,
    complete: np.ndarray,
    spec: AnalysisSpec,
    min_cell: int,
    rows: Callable[[np.ndarray], frozenset[int]],
) -> list[frozenset[int]]:
    """Per end of a released Kaplan-Meier bin, the complete rows followed up to it and those
    of them with the event by then (none when the curve cannot be made: the release says why)."""
    t, e = y[:, 0], y[:, 1]
    try:
        bins = survival.km_partial(t[complete], e[complete], spec.time_bin, min_cell)["bins"]
    except ValueError:
        return []
    sets = []
    for end, _, _ in bins:
        upto = complete & (np.ceil(t / spec.time_bin) * spec.time_bin <= end)
        sets += [rows(upto), rows(upto & (e == 1.0))]
    return sets


def extract(store: Store, spec: AnalysisSpec) -> TabularData:
    """The analysis's cohort and columns from the store, as a tabular task extracts them:
    from each person's entry event, or each member of its Circe cohort from their start."""
    from flip.data.features.tabular import extract_raw

    if spec.cohort is None:
        return extract_raw(store, spec.data)
    from flip.data.cohort.circe.run import run_circe

    return extract_raw(store, spec.data, run_circe(store, spec.cohort.expression).starts)


def _take_part(withheld: str | None) -> None:
    if withheld:
        raise Declined(f"this site takes no part in the model: {withheld}")


def _check_proposal(x: np.ndarray, proposal: object, model: str, min_cell: int) -> None:
    """Refuse a Newton proposal that is not one finite number per coefficient, that puts a
    row's linear predictor beyond ±MAX_LINEAR_PREDICTOR, or whose weights (logistic: p(1-p),
    Cox: exp(x'beta)) give fewer than min_cell rows' worth of weight (Kish's effective
    size): at such a point one row, or a few, would dominate the gradient and Hessian. The
    reason reaches the hub, so it names the minimum, not the effective size."""
    width = x.shape[1]
    if (
        not isinstance(proposal, list)
        or len(proposal) != width
        or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in proposal)
    ):
        raise Declined(f"the hub's proposal is not {width} coefficients")
    beta = np.asarray(proposal, dtype=float)
    if not np.isfinite(beta).all():
        raise Declined("the hub's proposal has a coefficient that is not a finite number")
    eta = x @ beta
    if len(eta) and np.abs(eta).max() > MAX_LINEAR_PREDICTOR:
        raise Declined(
            f"the hub's proposal puts a row's linear predictor beyond ±{MAX_LINEAR_PREDICTOR:g}"
        )
    if model == "logistic":
        weights = np.exp(-np.logaddexp(0, -eta)) * np.exp(-np.logaddexp(0, eta))
    else:
        weights = np.exp(eta - eta.max()) if len(eta) else eta
    effective = weights.sum() ** 2 / (weights**2).sum() if weights.any() else 0.0
    if effective < min_cell:
        raise Declined(
            f"at the hub's proposal fewer rows carry the weight than the site's minimum "
            f"{min_cell}: a few rows would dominate the release"
        )


def _count(n: int, min_cell: int) -> int | str:
    return hidden(min_cell) if is_small(n, min_cell) else n


def _table1(
    spec: AnalysisSpec, x: np.ndarray, y: np.ndarray, names: list[str], min_cell: int
) -> dict[str, dict]:
    columns: dict[str, np.ndarray] = {n: x[:, i].astype(float) for i, n in enumerate(names)}
    binary = {f.name for f in spec.data.features if f.source in BINARY_SOURCES}
    outcome = spec.data.outcome
    if outcome == "time-to-event":
        columns["follow_up_days"], columns["event"] = y[:, 0].astype(float), y[:, 1].astype(float)
        binary.add("event")
    else:
        columns["outcome"] = y.astype(float)
        if outcome in ("binary", "multiclass"):
            binary.add("outcome")
    out = {}
    for name, values in columns.items():
        if name in binary:
            levels = [None if np.isnan(v) else str(int(v)) for v in values]
            out[name] = describe.categorical_partial(levels, min_cell)
        else:
            out[name] = describe.numeric_partial(values, min_cell)
    return out
