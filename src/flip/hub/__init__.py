"""The hub: the control plane researchers and site agents talk to. It never holds a record."""

from flip.hub.app import create_app

__all__ = ["create_app"]
