"""Issue 19, item 3: a disabled site cannot enrol nor poll, whatever the order."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from flip.hub.server import BackgroundServer
from tests.conftest import build_site
from tests.e2e.processes import federation, matching, wait_for
from tests.e2e.test_hub_deployment import _start_run, _trained


def _register(hub, name: str) -> tuple[int, str]:
    created = hub.call("POST", "/sites", hub.admin, json={"name": name}).json()
    return created["id"], created["enrolment_token"]


def test_a_site_disabled_before_it_enrols_cannot_enrol_nor_poll(hub):
    site_id, enrolment = _register(hub, "a")
    assert hub.call("POST", f"/sites/{site_id}/disable", hub.admin).status_code == 204
    enrolled = hub.call("POST", "/sites/enrol", json={"enrolment_token": enrolment})
    assert enrolled.status_code in (401, 403), enrolled.text
    assert "token" not in enrolled.json()
    activity = hub.call("GET", f"/sites/{site_id}/activity", hub.admin).json()
    assert activity["status"] == "disabled"


def test_a_site_disabled_after_it_enrols_is_shut_out(hub):
    site_id, enrolment = _register(hub, "a")
    credential = hub.call("POST", "/sites/enrol", json={"enrolment_token": enrolment}).json()
    assert hub.call("GET", "/agent/work", credential["token"]).status_code == 200
    assert hub.call("POST", f"/sites/{site_id}/disable", hub.admin).status_code == 204
    assert hub.call("GET", "/agent/work", credential["token"]).status_code == 401
    assert hub.call("POST", "/agent/credential", credential["token"]).status_code == 401


def test_a_long_poll_in_flight_gets_no_work_once_its_site_is_disabled(hub):
    site_id, enrolment = _register(hub, "a")
    credential = hub.call("POST", "/sites/enrol", json={"enrolment_token": enrolment}).json()
    researcher = hub.user("rita", "researcher")
    pid = hub.call("POST", "/projects", researcher, json={"name": "p"}).json()["id"]
    hub.call("POST", f"/projects/{pid}/sites", researcher, json={"sites": ["a"]})
    server = BackgroundServer(hub.app).start()
    answers = []

    def poll() -> None:
        headers = {"Authorization": f"Bearer {credential['token']}"}
        answers.append(
            httpx.get(f"{server.url}/api/v1/agent/work?wait=20", headers=headers, timeout=30)
        )

    try:
        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(1.0)
        admin = {"Authorization": f"Bearer {hub.admin}"}
        api = f"{server.url}/api/v1"
        assert httpx.post(f"{api}/sites/{site_id}/disable", headers=admin).status_code == 204
        query = {"name": "q", "definition": {}}
        owner = {"Authorization": f"Bearer {researcher}"}
        assert httpx.post(f"{api}/projects/{pid}/queries", headers=owner, json=query).is_success
        poller.join(timeout=25)
    finally:
        server.stop()
    assert answers and answers[0].status_code == 401, answers and answers[0].text


@pytest.mark.e2e
@pytest.mark.slow
def test_a_disabled_sites_supernode_trains_no_more_rounds_of_a_run_it_joined(tmp_path):
    """Disabling shut a site's agent out, but its SuperNode's key stayed registered at the
    hub's SuperLink, so the SuperNode went on training the run it had joined. The hub now
    unregisters the key: the SuperLink refuses the node, and it gets no more work."""
    configs = {
        name: build_site(tmp_path, name, "csv", 120, seed=30 + i)
        for i, name in enumerate(("alpha", "beta"))
    }
    with federation(tmp_path, configs) as running:
        researcher, admin = running.researcher, running.admin
        project, run = _start_run(researcher, configs, rounds=100)
        wait_for(lambda: len(researcher.run(run)["round_metrics"]) >= 2, "two rounds", timeout=600)
        started = time.monotonic()
        wait_for(lambda: len(researcher.run(run)["round_metrics"]) >= 3, "a third round", 600)
        round_seconds = time.monotonic() - started
        assert admin.http.get("/sites/2/activity").json()["site"] == "beta"
        assert admin.http.post("/sites/2/disable").status_code == 204
        trained = _trained(configs["beta"], project)
        nodes = _flwr_nodes(tmp_path / "hub-flower" / "flwr-home")
        assert sorted(n["status"] for n in nodes) == ["online", "unregistered"], nodes
        # Rounds went on every `round_seconds` with beta in them; it trains none of them now.
        time.sleep(min(60.0, max(15.0, 3 * round_seconds)))
        assert _trained(configs["beta"], project) <= trained + 1, "a round in flight at most"
        researcher.set_run_status(run, "cancelled")  # it waits for beta's node otherwise
        wait_for(
            lambda: not matching("flower-supernode", str(configs["alpha"].resolve())),
            "alpha's SuperNode to stop",
            120,
        )


def _flwr_nodes(home) -> list[dict]:
    """The SuperNodes the hub's SuperLink knows, unregistered ones too."""
    env = {**os.environ, "FLWR_HOME": str(home)}
    listed = subprocess.run(
        [
            str(Path(sys.executable).parent / "flwr"),
            "supernode",
            "list",
            "flip",
            "-v",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return json.loads(listed.stdout[listed.stdout.find("{") :])["nodes"]
