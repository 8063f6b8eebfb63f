"""The one-line form of a pydantic validation failure, shared by every layer that reports one."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


def first_problem(exc: ValidationError) -> str:
    """The validation's first error with where it is (`data.outcome: Input should be ...`)."""
    problem = exc.errors()[0]
    where = ".".join(str(part) for part in problem["loc"])
    return f"{where}: {problem['msg']}" if where else str(problem["msg"])
