"""The API's reference at /docs: Swagger UI from the swagger-ui-py package, served by
the hub itself (no CDN, so it works offline and under a CSP without other origins)."""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: The web app's CSP, but Swagger UI sets inline styles.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>FLIP hub API</title>
<link rel="stylesheet" href="/docs/swagger/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi="{openapi}"></div>
<script src="/docs/swagger/swagger-ui-bundle.js"></script>
<script src="/static/api-docs.js"></script>
</body>
</html>
"""


def add_docs(app: FastAPI) -> None:
    """Serve Swagger UI over `app`'s OpenAPI schema at /docs (create the app with
    `docs_url=None`: FastAPI's own page loads Swagger UI from a CDN); its starting script
    is the web app's /static/api-docs.js."""
    page = PAGE.format(openapi=app.openapi_url)
    files = Path(swagger_ui.__file__).parent / "static"
    app.mount("/docs/swagger", StaticFiles(directory=files), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP})
