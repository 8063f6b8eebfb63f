"""Page routes both web apps share: a refused request becomes a page in words, not JSON."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from flip.webkit.render import problems, see_other

#: Renders the error page: (request, status code, message) -> the page.
ErrorPage = Callable[[Request, int, str], Response]


def refused(
    request: Request,
    code: int,
    message: str,
    error_page: ErrorPage,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The page for a refused request: sign in (401), or the reason in words with `headers`."""
    if code == status.HTTP_401_UNAUTHORIZED:
        if request.method == "GET":
            return see_other(f"/signin?next={quote(request.url.path)}")
        return see_other("/signin")
    response = error_page(request, code, message)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def page_route(error_page: ErrorPage) -> type[APIRoute]:
    """An APIRoute class whose HTTP and validation refusals render through `error_page`."""

    class PageRoute(APIRoute):
        def get_route_handler(self) -> Callable:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except HTTPException as exc:
                    return refused(
                        request, exc.status_code, str(exc.detail), error_page, exc.headers
                    )
                except (ValidationError, RequestValidationError) as exc:
                    return refused(request, 422, problems(exc), error_page)

            return handle

    return PageRoute


def unrouted_pages(app: FastAPI, error_page: ErrorPage, api: str | None = None) -> None:
    """Answer an address no route serves (404) or a method its route does not take (405)
    with `error_page`, as the page routes answer; paths under `api` keep FastAPI's JSON."""

    async def handle(request: Request, exc: StarletteHTTPException) -> Response:
        if api is not None and request.url.path.startswith(api):
            return await http_exception_handler(request, exc)
        return refused(request, exc.status_code, str(exc.detail), error_page, exc.headers)

    app.add_exception_handler(StarletteHTTPException, handle)
