"""Property-based calls generated from the hub's OpenAPI schema: none gets a 5xx."""

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from flip.hub.app import bootstrap_admin, create_app

_FOLDER = tempfile.TemporaryDirectory(prefix="flip-schemathesis-")
APP = create_app(f"sqlite:///{Path(_FOLDER.name) / 'hub.sqlite'}")
ADMIN = bootstrap_admin(APP.state.engine)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {ADMIN}"}, checks=[not_a_server_error]
    )
