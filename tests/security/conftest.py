"""The hub fixtures of tests/hub, for the attacks on the hub."""

from tests.hub.conftest import hub, hub_db_url  # noqa: F401 - fixtures
