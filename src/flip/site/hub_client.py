"""The site's HTTP client for the hub: outbound calls only, authenticated by the site credential."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from flip.data.cohort.disclosure import SiteCount

#: Log entries sent in one request (the hub takes at most 1,000).
LOG_ENTRIES_PER_REQUEST = 500
#: The characters of a decision's or a run reply's reason the hub keeps.
REASON_CHARACTERS = 2000

API = "/api/v1"


class HubClient:
    """Calls the hub's site-agent API."""

    def __init__(self, base_url: str, credential: str, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.http = httpx.Client(
            base_url=base_url.rstrip("/") + API,
            headers={"Authorization": f"Bearer {credential}"},
            timeout=timeout,
        )

    @staticmethod
    def enrol(base_url: str, enrolment_token: str, public_key: str | None = None) -> str:
        """Exchange a one-time enrolment token for this site's credential, registering the
        public key the site signs its ledger heads with; HubError naming the hub otherwise."""
        from flip.hub.client import HubError, HubUnreachable, not_a_hub

        body = {"enrolment_token": enrolment_token, "public_key": public_key}
        try:
            response = httpx.post(base_url.rstrip("/") + API + "/sites/enrol", json=body)
        except httpx.TransportError as exc:
            raise HubUnreachable(f"cannot reach the hub at {base_url}: {exc}") from None
        if problem := not_a_hub(response, base_url):
            raise problem
        if response.status_code == 401 and "expired" in response.text:
            raise HubError(f"{base_url}: {response.json()['detail']}", 401)
        if response.status_code == 401 or (
            response.status_code == 422 and "enrolment_token" in response.text
        ):
            raise HubError(f"{base_url}: enrolment token unknown or already used", 401)
        if response.is_error:
            detail = response.text.strip()[:200]
            raise HubError(f"{base_url} refused the enrolment: {detail}", response.status_code)
        return str(response.json()["token"])

    def work(self, wait: float = 0.0, training: Iterable[int] = ()) -> dict[str, Any]:
        """Pending queries, tasks, runs and analysis rounds, and the deployment runs to serve.

        `wait` > 0 long-polls that long; `training` names the runs served now, so the
        hub answers at once when that set changes.
        """
        params: dict[str, Any] = {"training": sorted(training)}
        if wait:
            params["wait"] = wait
        response = self.http.get("/agent/work", params=params, timeout=self.timeout + wait)
        response.raise_for_status()
        return response.json()

    def register_node_key(self, public_key: str) -> None:
        """Register this site's SuperNode public key with the hub's SuperLink."""
        self.http.post("/agent/node-key", json={"public_key": public_key}).raise_for_status()

    def answer_query(self, query_id: int, count: SiteCount, error: str | None = None) -> None:
        """Release a (suppressed) count, or the reason the site could not answer."""
        body = count.model_dump() | {"error": error}
        self.http.post(f"/agent/queries/{query_id}", json=body).raise_for_status()

    def decide(self, project_id: int, task_hash: str, decision: str, reason: str = "") -> None:
        """Report the site's decision on a task (its reason cut to what the hub keeps)."""
        body = {
            "project_id": project_id,
            "task_hash": task_hash,
            "decision": decision,
            "reason": reason[:REASON_CHARACTERS],
        }
        self.http.post("/agent/decisions", json=body).raise_for_status()

    def reply_run(self, run_id: int, status: str, reason: str = "") -> None:
        """Join or refuse a run (the reason cut to what the hub keeps)."""
        self.http.post(
            f"/agent/runs/{run_id}", json={"status": status, "reason": reason[:REASON_CHARACTERS]}
        ).raise_for_status()

    def share_run_log(self, run_id: int, entries: list[dict[str, Any]]) -> None:
        """Send entries of this site's own log of a run (the hub keeps each once), at most
        `LOG_ENTRIES_PER_REQUEST` a request."""
        for start in range(0, len(entries), LOG_ENTRIES_PER_REQUEST):
            part = entries[start : start + LOG_ENTRIES_PER_REQUEST]
            self.http.post(f"/agent/runs/{run_id}/log", json={"entries": part}).raise_for_status()

    def anchor(self, head: dict[str, Any]) -> dict[str, Any]:
        """Show the hub the ledger's signed head; the reply carries the hub's own."""
        response = self.http.post("/agent/anchor", json=head)
        response.raise_for_status()
        return response.json()

    def check_hub_heads(self, heads: list[dict[str, Any]]) -> list[str]:
        """Why the hub's audit no longer holds each of these signed heads (empty: it does)."""
        response = self.http.post("/agent/hub-heads/check", json={"heads": heads})
        response.raise_for_status()
        return list(response.json()["problems"])

    def countersign(self, run_id: int, signature: str) -> None:
        """Countersign run `run_id`'s certificate."""
        response = self.http.post(f"/agent/certificates/{run_id}", json={"signature": signature})
        response.raise_for_status()

    def analyses(self) -> list[dict[str, Any]]:
        """The analyses whose current round this site has yet to release (or refuse); none
        from a hub that predates analyses (404)."""
        response = self.http.get("/agent/analyses")
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return list(response.json())

    def release_analysis(
        self,
        analysis_id: int,
        round_: int,
        release: dict[str, Any] | None,
        refused: str | None = None,
    ) -> None:
        """Release this site's aggregates for one round of an analysis, or refuse it."""
        body = {"round": round_, "release": release, "refused": refused}
        if refused is not None:
            body["refused"] = refused[:REASON_CHARACTERS]
        self.http.post(f"/agent/analyses/{analysis_id}", json=body).raise_for_status()

    def release_quality(self, report: dict[str, Any]) -> None:
        """Release this site's (suppressed) data-quality aggregates to the network view."""
        self.http.post("/agent/quality", json={"report": report}).raise_for_status()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()
