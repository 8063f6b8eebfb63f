"""The hub's API routers."""
