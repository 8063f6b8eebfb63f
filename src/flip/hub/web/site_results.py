"""A finished run's results as the run page's table: each site's metrics, federated
beside personalised and local-only.

A hub run trains only the federated model and evaluates it on each site's test split
(`results["per_site"]`); under personalisation each site also reports its personal
model's metrics (`personal_<metric>`), shown beside the federated one. No local-only
model is trained, so that column says so rather than show a number nobody computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: What a site reports about its data beside the metrics (rows, fingerprint): not metrics.
SITE_FACTS = ("n_train", "n_test", "data_sha256")
#: The prefix of a personalised task's personal-model metrics in a site's results.
PERSONAL = "personal_"


@dataclass(frozen=True)
class SiteMetric:
    """One metric of one site: the federated model's value on the site's test split, and the
    site's personal model's (None: the task is not personalised)."""

    site: str
    metric: str
    federated: Any
    n_train: Any
    n_test: Any
    personal: Any = None


def site_metrics(results: Any) -> list[SiteMetric]:
    """The rows of the run page's per-site table (empty when the results hold no per-site
    metrics), sorted by site, then metric."""
    if not isinstance(results, dict):
        return []
    per_site = results.get("per_site") or results.get("metrics")
    if not isinstance(per_site, dict):
        return []
    rows = []
    for site, found in sorted(per_site.items()):
        if not isinstance(found, dict):
            continue
        for metric, value in sorted(found.items()):
            if metric not in SITE_FACTS and not metric.startswith(PERSONAL):
                rows.append(
                    SiteMetric(
                        site,
                        metric,
                        value,
                        found.get("n_train"),
                        found.get("n_test"),
                        found.get(f"{PERSONAL}{metric}"),
                    )
                )
    return rows


def personalised(rows: list[SiteMetric]) -> bool:
    """Whether any site reported a personal model's metrics."""
    return any(row.personal is not None for row in rows)
