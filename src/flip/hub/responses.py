"""The error answers the hub's API gives, declared once for every router's operations."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    """One reason a request was refused: where in the request, and why."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int] = Field(description="Where: body, query or path, then the field.")
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Why the hub refused a request: one sentence, or (422) each problem with its place."""

    detail: str | list[Problem]


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description, **extra}


#: Every refusal the API gives, by status; each router's operations declare them all.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("The request cannot be read, or does not fit the caller's kind of token."),
    401: _error("No valid credential: missing, unknown, expired or revoked."),
    403: _error("The caller's role or scope does not allow this."),
    404: _error("No such object, or none the caller may see."),
    409: _error("Conflicts with the object's current state (exists already, wrong state)."),
    413: _error("The request body is over the hub's size limit."),
    422: _error("Invalid input: each problem with where it is and why."),
    429: _error(
        "Too many attempts (try again after Retry-After seconds), or a per-user cap reached "
        "(the detail names it).",
        headers={"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
    ),
}
