"""A small FHIR R4 server for tests: searchset paging, `_lastUpdated`, and async `$export`.

No FHIR server can be installed on the test machine (they need downloads outside the
package registries), so this one speaks the parts of the HTTP API FLIP uses.
"""

from __future__ import annotations

import itertools

import orjson
from fastapi import FastAPI, Request, Response


class FhirServer:
    """Resources by type, each with meta.lastUpdated; `polls_before_ready` slows $export."""

    def __init__(self, resources: list[dict], polls_before_ready: int = 2) -> None:
        self.resources: dict[str, list[dict]] = {}
        for r in resources:
            self.put(r)
        self.polls_before_ready = polls_before_ready
        self.jobs: dict[str, dict] = {}
        #: (Type/id, lastUpdated) of deleted resources, and error files, for `$export`.
        self.deleted: list[tuple[str, str]] = []
        self.errors: list[dict] = []
        self.requests: list[str] = []
        self.app = self._build()

    def put(self, resource: dict) -> None:
        bucket = self.resources.setdefault(resource["resourceType"], [])
        bucket[:] = [r for r in bucket if r["id"] != resource["id"]] + [resource]

    def delete(self, kind: str, id_: str, when: str) -> None:
        self.resources[kind] = [r for r in self.resources.get(kind, []) if r["id"] != id_]
        self.deleted.append((f"{kind}/{id_}", when))

    def _deletions(self, after: str | None) -> list[dict]:
        return [
            {"request": {"method": "DELETE", "url": key}}
            for key, when in self.deleted
            if after is None or when > after
        ]

    def _matching(self, kind: str, after: str | None) -> list[dict]:
        return [
            r
            for r in self.resources.get(kind, [])
            if after is None or r["meta"]["lastUpdated"] > after
        ]

    def _build(self) -> FastAPI:
        app = FastAPI()
        counter = itertools.count(1)

        @app.middleware("http")
        async def log(request: Request, call_next):
            self.requests.append(f"{request.method} {request.url.path}?{request.url.query}")
            return await call_next(request)

        @app.get("/fhir/$export")
        def kickoff(request: Request, _type: str = "", _since: str | None = None) -> Response:
            job = str(next(counter))
            self.jobs[job] = {"polls": 0, "types": _type.split(","), "since": _since}
            base = str(request.base_url).rstrip("/")
            return Response(
                status_code=202, headers={"Content-Location": f"{base}/fhir/$export-status/{job}"}
            )

        @app.get("/fhir/$export-status/{job}")
        def status(job: str, request: Request) -> Response:
            state = self.jobs[job]
            state["polls"] += 1
            if state["polls"] <= self.polls_before_ready:
                return Response(
                    status_code=202, headers={"Retry-After": "0", "X-Progress": "working"}
                )
            base = str(request.base_url).rstrip("/")
            output = [
                {"type": kind, "url": f"{base}/fhir/$export-file/{job}/{kind}.ndjson"}
                for kind in state["types"]
                if self._matching(kind, state["since"])
            ]
            manifest = {
                "transactionTime": self._newest(),
                "request": "$export",
                "requiresAccessToken": False,
                "output": output,
                "error": [
                    {"type": "OperationOutcome", "url": f"{base}/fhir/$export-file/{job}/err{i}"}
                    for i, _ in enumerate(self.errors)
                ],
            }
            if self._deletions(state["since"]):
                url = f"{base}/fhir/$export-file/{job}/deleted.ndjson"
                manifest["deleted"] = [{"type": "Bundle", "url": url}]
            return Response(orjson.dumps(manifest), media_type="application/json")

        @app.get("/fhir/$export-file/{job}/{kind}.ndjson")
        def download(job: str, kind: str) -> Response:
            if kind == "deleted":
                entries = self._deletions(self.jobs[job]["since"])
                bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
                return Response(orjson.dumps(bundle) + b"\n", media_type="application/fhir+ndjson")
            lines = b"\n".join(
                orjson.dumps(r) for r in self._matching(kind, self.jobs[job]["since"])
            )
            return Response(lines + b"\n", media_type="application/fhir+ndjson")

        @app.get("/fhir/{kind}")
        def search(
            kind: str,
            request: Request,
            _count: int = 50,
            _page: int = 1,
            _lastUpdated: str | None = None,
        ) -> Response:
            after = _lastUpdated[2:] if _lastUpdated and _lastUpdated.startswith("gt") else None
            found = self._matching(kind, after)
            page = found[(_page - 1) * _count : _page * _count]
            bundle = {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(found),
                "entry": [
                    {
                        "fullUrl": f"{request.base_url}fhir/{kind}/{r['id']}",
                        "resource": r,
                        "search": {"mode": "match"},
                    }
                    for r in page
                ],
                "link": [{"relation": "self", "url": str(request.url)}],
            }
            if _page * _count < len(found):
                query = f"_count={_count}&_page={_page + 1}" + (
                    f"&_lastUpdated={_lastUpdated}" if after else ""
                )
                bundle["link"].append(
                    {"relation": "next", "url": f"{request.base_url}fhir/{kind}?{query}"}
                )
            return Response(orjson.dumps(bundle), media_type="application/fhir+json")

        return app

    def _newest(self) -> str:
        updated = [r["meta"]["lastUpdated"] for rs in self.resources.values() for r in rs]
        return max(updated + [when for _, when in self.deleted])
