"""Issue 19, item 3: a disabled site cannot enrol nor poll, whatever the order. (That its
SuperNode trains no more rounds of a run it joined is tested with real processes in
tests/e2e/test_hub_deployment.py, on the run that is cancelled there.)"""

import threading
import time

import httpx

from flip.hub.server import BackgroundServer


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
