"""An analysis combined at a coordinator round by round from the sites' releases.

An analysis spec is JSON (`kind` table1, survival or regression; `covariates`; `family`):
the sites compute their releases from their own rows, and `combine_round` turns one round
of releases into the next state. Table 1, Kaplan-Meier and linear regression take one round;
a Cox or logistic model then takes Newton rounds, each asking the sites that took part for
their partial at `state["proposal"]`, until the state holds a `result`.

Round 0 releases, per kind:
- table1: `{"columns": {NAME: describe partial}}`;
- survival: `{"km": km partial, "cox": cox partial at 0 or None, "counts": cox counts or None,
  "left_out": int or "<k"}`;
- harmonisation: a site's mapping of the concept set (`flip.data.features.harmonisation`);
- regression: `{"withheld": bool, "left_out": int or "<k" ("withheld" for a withheld site),
  "n": int, "linear": partial}` (linear) or `{..., "newton": logistic partial at 0}`;
later rounds: `{"newton": partial at the proposal}`.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from scipy import stats as scipy_stats

from flip.stats import describe, newton, regression, survival
from flip.stats.suppression import total

KINDS = ("table1", "survival", "regression", "harmonisation")
INTERCEPT = "intercept"


def spec_hash(spec: dict) -> str:
    """SHA-256 of the spec's canonical JSON: what a site approves."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def coefficients(names: list[str], beta, covariance, dist) -> dict:
    """Coefficients, standard errors and two-sided p-values by term."""
    se = np.sqrt(np.diag(np.asarray(covariance)))
    p = 2 * dist.sf(np.abs(np.asarray(beta) / se))
    return {
        "coef": dict(zip(names, map(float, beta), strict=True)),
        "se": dict(zip(names, map(float, se), strict=True)),
        "p": dict(zip(names, map(float, p), strict=True)),
    }


def terms(spec: dict) -> list[str]:
    """The model's coefficient names: the covariates (with an intercept for a regression)."""
    covariates = list(spec.get("covariates") or [])
    return [INTERCEPT, *covariates] if spec["kind"] == "regression" else covariates


def combine_round(spec: dict, state: dict, releases: dict[str, dict]) -> dict:
    """The state after one round of releases (by site name); `result` once complete."""
    if state.get("round", 0) > 0:
        return _newton_round(spec, state, releases)
    kind = spec["kind"]
    if kind == "table1":
        return {"round": 0, "result": _table1(releases)}
    if kind == "survival":
        return _survival(spec, releases)
    if kind == "regression":
        return _regression(spec, releases)
    if kind == "harmonisation":
        return {"round": 0, "result": _harmonisation(releases)}
    raise ValueError(f"analysis kind {kind!r}: choose one of {', '.join(KINDS)}")


def _table1(releases: dict[str, dict]) -> dict:
    columns = list(next(iter(releases.values()))["columns"]) if releases else []
    sites = {
        name: {c: describe.site_stats(p) for c, p in r["columns"].items()}
        for name, r in releases.items()
    }
    combined = {c: describe.combine([r["columns"][c] for r in releases.values()]) for c in columns}
    first = next(iter(releases.values()), {"columns": {}})["columns"]
    numeric = [c for c in columns if first[c]["kind"] == "numeric"]
    smd = {c: describe.smd({name: sites[name][c] for name in releases}) for c in numeric}
    by_site = {name: r["columns"] for name, r in releases.items()}
    withheld = {c: describe.withheld_sites(by_site, c) for c in columns}
    return {"combined": combined, "sites": sites, "smd": smd, "withheld": withheld}


def _harmonisation(releases: dict[str, dict]) -> dict:
    """Each site's mapping side by side, and per concept each site's mapped rows."""
    concepts = sorted({cid for r in releases.values() for cid in r["concepts"]}, key=int)
    by_concept = {
        cid: {name: r["concepts"].get(cid, {}).get("rows", 0) for name, r in releases.items()}
        for cid in concepts
    }
    return {"concepts": by_concept, "sites": releases}


def _survival(spec: dict, releases: dict[str, dict]) -> dict:
    partials = {name: r["km"] for name, r in releases.items()}
    summary = {
        "km": {
            "combined": survival.kaplan_meier(list(partials.values())),
            "sites": {name: survival.kaplan_meier([p]) for name, p in partials.items()},
        },
        "logrank": {**survival.logrank(list(partials.values())), "between": "sites"},
        "cox": None,
        "left_out": {name: r["left_out"] for name, r in releases.items()},
        "withheld": [name for name, p in partials.items() if not p["bins"]],
    }
    taking_part = {name: r for name, r in releases.items() if r.get("cox") is not None}
    if not terms(spec) or not taking_part:
        return {"round": 0, "result": summary}
    counts = {name: r["counts"] for name, r in taking_part.items()}
    summary["cox"] = {
        "n": total([c["n"] for c in counts.values()]),
        "events": total([c["events"] for c in counts.values()]),
        "sites": counts,
        "strata": "site",
    }
    first = {name: r["cox"] for name, r in taking_part.items()}
    return _newton_start(spec, summary, first)


def _regression(spec: dict, releases: dict[str, dict]) -> dict:
    taking_part = {name: r for name, r in releases.items() if not r["withheld"]}
    summary = {
        "family": spec["family"],
        "n": sum(r["n"] for r in taking_part.values()),
        "left_out": {name: r["left_out"] for name, r in releases.items()},
        "withheld": [name for name, r in releases.items() if r["withheld"]],
    }
    if not taking_part:
        raise ValueError("no site has enough complete rows for this regression")
    if spec["family"] == "linear":
        fit = regression.linear_fit([r["linear"] for r in taking_part.values()])
        dist = scipy_stats.t(summary["n"] - len(terms(spec)))
        found = coefficients(terms(spec), fit["beta"], fit["covariance"], dist)
        return {"round": 0, "result": {**summary, **found, "steps": 1}}
    first = {name: r["newton"] for name, r in taking_part.items()}
    return _newton_start(spec, summary, first)


def _newton_start(spec: dict, summary: dict, first: dict[str, dict]) -> dict:
    state = {"round": 0, "summary": summary, "sites": sorted(first)}
    state["newton"] = newton.start(len(terms(spec)))
    return _newton_round(spec, state, {name: {"newton": p} for name, p in first.items()})


def _newton_round(spec: dict, state: dict, releases: dict[str, dict]) -> dict:
    missing = sorted(set(state["sites"]) - set(releases))
    if missing:
        raise ValueError(f"site(s) {', '.join(missing)} left the model in round {state['round']}")
    partials = [releases[name]["newton"] for name in state["sites"]]
    moved = newton.advance(state["newton"], partials)
    after = {**state, "round": state["round"] + 1, "newton": moved}
    if "result" not in moved:
        return after
    fit = moved["result"]
    found = coefficients(terms(spec), fit["beta"], fit["covariance"], scipy_stats.norm)
    found["steps"] = fit["steps"]
    summary = state["summary"]
    if spec["kind"] == "survival":
        result = {**summary, "cox": {**found, **summary["cox"]}}
    else:
        result = {**summary, **found}
    return {**after, "result": result}
