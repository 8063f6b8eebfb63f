"""FHIR REST servers: paged search (incremental by `_lastUpdated`) and Bulk Data `$export`.

Both yield the same records as the file reader. The newest `meta.lastUpdated`
seen (search) or the export's `transactionTime` (bulk) is returned so the next
run asks only for what changed since.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from flip.data.sources.fhir import SUPPORTED, References, _rank, read_bundle, read_lines
from flip.data.sources.identity import PersonIdentity
from flip.data.sources.records import Rejected, SourceRecord, Unread

if TYPE_CHECKING:  # the reader only uses the client it is given; importing httpx costs startup
    import httpx

FHIR_JSON = "application/fhir+json"


class FhirServerError(RuntimeError):
    """The server refused or failed a request; the message says which and why."""


@dataclass
class Watermark:
    """The newest change time a run has seen, to start the next run from."""

    value: str | None = None

    def see(self, stamp: str | None) -> None:
        """Remember `stamp` if it is the newest so far (ISO 8601 instants compare as text)."""
        if stamp and (self.value is None or stamp > self.value):
            self.value = stamp


def _get(client: httpx.Client, url: str, **kwargs) -> httpx.Response:
    response = client.get(url, **kwargs)
    if response.status_code >= 400:
        raise FhirServerError(f"GET {url}: {response.status_code} {response.text[:200]}")
    return response


def search(
    client: httpx.Client,
    base: str,
    *,
    since: str | None = None,
    types: tuple[str, ...] = SUPPORTED,
    page_size: int = 200,
    watermark: Watermark | None = None,
    person_identifier: PersonIdentity | str | None = None,
) -> Iterator[SourceRecord]:
    """Search each resource type (patients first), following `next` links to the last page."""
    refs = References(person_identifier)
    watermark = watermark if watermark is not None else Watermark()
    for kind in types:
        params: dict[str, str | int] = {"_count": page_size}
        if since:
            params["_lastUpdated"] = f"gt{since}"
        url: str | None = f"{base.rstrip('/')}/{kind}"
        page = 0
        while url:
            page += 1
            response = _get(
                client, url, params=params if page == 1 else None, headers={"Accept": FHIR_JSON}
            )
            try:
                bundle = orjson.loads(response.content)
            except orjson.JSONDecodeError as exc:
                yield Rejected(None, url, "json.malformed", str(exc), response.content)
                break
            for entry in bundle.get("entry") or []:
                watermark.see(((entry.get("resource") or {}).get("meta") or {}).get("lastUpdated"))
            yield from read_bundle(bundle, f"{url}", refs)
            url = next(
                (
                    link["url"]
                    for link in bundle.get("link") or []
                    if link.get("relation") == "next"
                ),
                None,
            )


def bulk_export(
    client: httpx.Client,
    base: str,
    *,
    since: str | None = None,
    poll_seconds: float = 1.0,
    timeout: float = 3600.0,
    watermark: Watermark | None = None,
    person_identifier: PersonIdentity | str | None = None,
) -> Iterator[SourceRecord]:
    """Kick off a system-level `$export`, poll until done, and stream every output file, then
    the `deleted` files (Bundles of DELETE entries); each `error` file is listed as unread."""
    watermark = watermark if watermark is not None else Watermark()
    params = {"_type": ",".join(SUPPORTED)}
    if since:
        params["_since"] = since
    kickoff = client.get(
        f"{base.rstrip('/')}/$export",
        params=params,
        headers={"Accept": FHIR_JSON, "Prefer": "respond-async"},
    )
    if kickoff.status_code != 202 or "content-location" not in kickoff.headers:
        raise FhirServerError(
            f"$export kick-off: expected 202 with Content-Location, got {kickoff.status_code}"
        )
    status_url = kickoff.headers["content-location"]
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(status_url, headers={"Accept": "application/json"})
        if status.status_code == 200:
            break
        if status.status_code != 202:
            raise FhirServerError(f"$export status: {status.status_code} {status.text[:200]}")
        if time.monotonic() > deadline:
            raise FhirServerError(f"$export did not finish within {timeout:.0f} s")
        time.sleep(float(status.headers.get("retry-after", poll_seconds)))
    manifest = status.json()
    watermark.see(manifest.get("transactionTime"))
    refs = References(person_identifier)
    outputs = sorted(
        manifest.get("output") or [], key=lambda o: _rank({"resourceType": o.get("type")})
    )
    outputs += manifest.get("deleted") or []  # Bundles of DELETE entries, read last
    for output in outputs:
        with client.stream(
            "GET", output["url"], headers={"Accept": "application/fhir+ndjson"}
        ) as response:
            if response.status_code >= 400:
                raise FhirServerError(f"GET {output['url']}: {response.status_code}")
            lines = (line.encode() for line in response.iter_lines())
            yield from read_lines(lines, output["url"], refs)
    for output in manifest.get("error") or []:
        reason = "the export's error file (OperationOutcome): resources the server failed to export"
        yield Unread(str(output.get("url")), reason, failed=True)
