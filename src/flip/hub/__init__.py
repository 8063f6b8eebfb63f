"""The hub: the control plane researchers and site agents talk to. It never holds a record.

`create_app` is imported when first asked for, so that a light part of the hub (the
researcher's `client`) does not pull in the web application and its dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flip.hub.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from flip.hub.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
