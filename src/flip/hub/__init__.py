"""The hub: the control plane researchers and site agents talk to. It never holds a record.

The server is `flip.hub.app.create_app`; importing this package loads none of it, so a
client (`flip.hub.client`, every `flip` command) starts without FastAPI and the routes.
"""
