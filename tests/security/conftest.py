from tests.hub.conftest import hub, hub_db_url  # noqa: F401 - the hub fixtures, shared
