"""A researcher's (or admin's) HTTP client for the hub API."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from flip.hub.prefix import API_PREFIX


class HubError(RuntimeError):
    """The hub refused a request; the message is the hub's own, `status` its HTTP status."""

    def __init__(self, message: str, status: int = 0, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class HubUnreachable(HubError):
    """No answer from the hub: wrong address, or it is down."""


def _detail(response: httpx.Response) -> str:
    """The hub's reason for refusing: its `detail` (problems joined), else the body's text."""
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}"
            if isinstance(d, dict)
            else str(d)
            for d in detail
        )
    return str(detail)


def hub_url(url: httpx.URL | str) -> str:
    """The hub's address as a user gave it: `url` without the API prefix."""
    return str(url).rstrip("/").removesuffix(API_PREFIX)


def not_a_hub(response: httpx.Response, url: httpx.URL | str) -> HubError | None:
    """A HubError naming `url` when `response` is a web page, not the hub API's JSON."""
    if "html" not in response.headers.get("content-type", ""):
        return None
    return HubError(
        f"{hub_url(url)} is not a FLIP hub (it answered {response.status_code} with a web page)"
    )


def _request(http: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Send one request; HubUnreachable if no answer came, HubError if the hub refused it
    or the server is not a hub."""
    try:
        response = http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise HubUnreachable(f"cannot reach the hub at {hub_url(http.base_url)}: {exc}") from None
    if problem := not_a_hub(response, http.base_url):
        raise problem
    if response.is_error:
        detail = _detail(response) if response.content else ""
        raise HubError(
            f"{method} {path}: {response.status_code} {detail}", response.status_code, detail
        )
    return response


def login(
    base_url: str,
    name: str,
    password: str,
    code: str | None = None,
    hours: int = 12,
    timeout: float = 30.0,
) -> str:
    """A session token for the user (with a TOTP `code` once they enrolled), lasting `hours`."""
    body = {"name": name, "password": password, "expires_in_hours": hours}
    body |= {"code": code} if code else {}
    with httpx.Client(base_url=base_url.rstrip("/") + API_PREFIX, timeout=timeout) as http:
        return _request(http, "POST", "/login", json=body).json()["token"]


class ResearcherClient:
    """Typed calls to the hub's user-facing API."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(
            base_url=base_url.rstrip("/") + API_PREFIX,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = _request(self.http, method, path, **kwargs)
        return response.json() if response.content else None

    def logout(self) -> None:
        """End the session whose token this client holds."""
        self._call("POST", "/logout")

    def projects(self, search: str = "") -> list[dict[str, Any]]:
        """The projects the caller sees, newest first."""
        return self._call("GET", "/projects", params={"search": search} if search else {})

    def tasks(self, project_id: int) -> list[dict[str, Any]]:
        """A project's proposed tasks with each invited site's decision."""
        return self._call("GET", f"/projects/{project_id}/tasks")

    def queries(self, project_id: int) -> list[dict[str, Any]]:
        """A project's cohort queries, newest first."""
        return self._call("GET", f"/projects/{project_id}/queries")

    def runs(self, project_id: int) -> list[dict[str, Any]]:
        """A project's runs, newest first."""
        return self._call("GET", f"/projects/{project_id}/runs")

    def model_download(self, model_id: str, fmt: str = "zip") -> bytes:
        """A registered model: its folder zipped (weights, lineage, card), or its weights as
        `torch` or `onnx`."""
        path = f"/models/{quote(model_id, safe='')}/download"
        return _request(self.http, "GET", path, params={"format": fmt}).content

    def create_user(self, name: str, role: str, password: str | None = None) -> str:
        """Create a user (with a password, they may also sign in on the web); their token."""
        body = {"name": name, "role": role} | ({"password": password} if password else {})
        return self._call("POST", "/users", json=body)["token"]

    def create_site(self, name: str, expires_in_days: int | None = None) -> str:
        """Register a site; return its one-time enrolment token (working for
        `expires_in_days`, the hub's default unless given)."""
        days = {} if expires_in_days is None else {"expires_in_days": expires_in_days}
        return self._call("POST", "/sites", json={"name": name} | days)["enrolment_token"]

    def create_project(self, name: str, description: str = "") -> int:
        """Create a project; return its id."""
        return self._call("POST", "/projects", json={"name": name, "description": description})[
            "id"
        ]

    def project(self, project_id: int) -> dict[str, Any]:
        """A project with its sites' statuses."""
        return self._call("GET", f"/projects/{project_id}")

    def add_members(self, project_id: int, users: list[str]) -> list[str]:
        """Add researchers to a project by name; return its members."""
        return self._call("POST", f"/projects/{project_id}/members", json={"users": users})

    def remove_member(self, project_id: int, user_id: int) -> None:
        """Take a member (by user id, `project(...)["member_ids"]`) off a project."""
        self._call("DELETE", f"/projects/{project_id}/members/{user_id}")

    def invite(self, project_id: int, sites: list[str]) -> dict[str, str]:
        """Invite sites to a project."""
        return self._call("POST", f"/projects/{project_id}/sites", json={"sites": sites})

    def propose_task(
        self, project_id: int, task_hash: str, kind: str, spec: dict[str, Any]
    ) -> None:
        """Propose a task for the sites to approve."""
        self._call(
            "POST",
            f"/projects/{project_id}/tasks",
            json={"hash": task_hash, "kind": kind, "spec": spec},
        )

    def create_query(self, project_id: int, name: str, definition: dict[str, Any]) -> int:
        """Ask the project's sites for a cohort count; return the query id."""
        body = {"name": name, "definition": definition}
        return self._call("POST", f"/projects/{project_id}/queries", json=body)["id"]

    def query(self, query_id: int) -> dict[str, Any]:
        """A query's released counts."""
        return self._call("GET", f"/queries/{query_id}")

    def create_run(
        self, project_id: int, task_hash: str, rounds: int, runtime: str = "simulation"
    ) -> int:
        """Request a federated run of an approved task; return the run id.

        A `deployment` run trains on the hub's Flower SuperLink once set running.
        """
        body = {"task_hash": task_hash, "rounds": rounds, "runtime": runtime}
        return self._call("POST", f"/projects/{project_id}/runs", json=body)["id"]

    def run(self, run_id: int) -> dict[str, Any]:
        """A run's state, sites and metrics."""
        return self._call("GET", f"/runs/{run_id}")

    def set_run_status(
        self, run_id: int, status: str, results: dict[str, Any] | None = None
    ) -> None:
        """Move a run to `status`, with its results when it completes."""
        self._call("POST", f"/runs/{run_id}/status", json={"status": status, "results": results})

    def add_round(self, run_id: int, round_number: int, metrics: dict[str, float]) -> None:
        """Record one round's aggregated metrics."""
        self._call(
            "POST", f"/runs/{run_id}/rounds", json={"round": round_number, "metrics": metrics}
        )

    def certificate(self, run_id: int) -> dict[str, Any]:
        """A completed run's certificate, with the sites' countersignatures so far."""
        return self._call("GET", f"/runs/{run_id}/certificate")

    def submit_analysis(
        self, project_id: int, spec: dict[str, Any], timeout: int | None = None
    ) -> dict[str, Any]:
        """Ask the project's sites for an analysis (its spec as FLIP writes it); each round
        waits `timeout` s for them (None: the hub's default, a day)."""
        body: dict[str, Any] = {"spec": spec}
        if timeout is not None:
            body["timeout"] = timeout
        return self._call("POST", f"/projects/{project_id}/analyses", json=body)

    def analysis(self, analysis_id: int) -> dict[str, Any]:
        """An analysis: each site's part, and the combined result once complete."""
        return self._call("GET", f"/analyses/{analysis_id}")

    def analyses(self, project_id: int) -> list[dict[str, Any]]:
        """A project's analyses, newest first."""
        return self._call("GET", f"/projects/{project_id}/analyses")

    def quality(self) -> dict[str, Any]:
        """Every site's released data-quality aggregates, by site."""
        return self._call("GET", "/quality")

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()
