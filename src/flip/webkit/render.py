"""Rendering both web apps share: templates over the shared layout, times, redirects and
validation errors in words."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import ValidationError

from flip.webkit import TEMPLATES


def when(value: datetime | str | float | None) -> str:
    """A time as people read it (UTC, to the minute or second); "never" for none."""
    if value is None:
        return "never"
    if isinstance(value, float):
        value = datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        return value[:19].replace("T", " ")
    return value.strftime("%Y-%m-%d %H:%M")


#: Characters that show nothing themselves but change how the text around them reads:
#: control characters (but tab and line ends), bidi embeddings, overrides and isolates,
#: zero-width and other invisible format characters, line and paragraph separators.
HIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]"
)


def visible(value: Any) -> Any:
    """`value` as a page shows it: each HIDDEN character in a text written out as `\\uXXXX`,
    so that a name someone else chose (a project, a task's code) cannot pass for another
    or reorder what a reviewer reads (Trojan Source); anything else as it is."""
    if not isinstance(value, str) or not HIDDEN.search(value):
        return value
    shown = HIDDEN.sub(lambda found: f"\\u{ord(found.group()):04x}", value)
    return Markup(shown) if isinstance(value, Markup) else shown


def templates_in(folder: Path) -> Jinja2Templates:
    """The templates of an app's `folder`, then the shared ones (`layout.html`, `_csrf.html`);
    every value a page writes is `visible`."""
    templates = Jinja2Templates(directory=[folder, TEMPLATES])
    templates.env.filters["when"] = when
    templates.env.finalize = visible
    return templates


def static_files(folder: Path | None = None) -> StaticFiles:
    """An app's static files in `folder` (if it has any), then the shared ones (`flip.css`)."""
    return StaticFiles(directory=folder, packages=[("flip.webkit", "static")])


def see_other(url: str) -> RedirectResponse:
    """Redirect after a form (303: the browser follows with GET)."""
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


def problems(exc: ValidationError | RequestValidationError) -> str:
    """A validation error in words: each field and what is wrong with it."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"] if p not in ("body", "query")) or "input"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
