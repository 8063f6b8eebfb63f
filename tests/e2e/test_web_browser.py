"""The hub's web app in Debian's Chromium (Playwright), against a real `flip hub serve` and
real site agents: sign in with TOTP, create a project, build a cohort and watch the counts
arrive, and the admin's pages. Screenshots go to test-output/screenshots/; each page is
scanned with axe-core for serious or critical accessibility violations."""

from pathlib import Path

import httpx
import pyotp
import pytest
from playwright.sync_api import expect

from flip.data.terminology.athena import starter_folder
from tests.conftest import build_site
from tests.e2e.browser import chromium, scan
from tests.e2e.processes import Hub, enrol, start_agent, stop_agents

SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
PASSWORD = "a browser test password"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium for the module."""
    yield from chromium()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """One hub process and two site agents for the module; the admin and a researcher have
    passwords. The small site's counts fall under its threshold."""
    folder = tmp_path_factory.mktemp("web-e2e")
    configs = {
        "north": build_site(folder, "north", "fhir-ndjson", 300, seed=4),
        "tiny": build_site(folder, "tiny", "csv", 30, seed=4),
    }
    server = Hub(folder, flower=False, vocabulary=starter_folder())
    admin = server.start()
    api = httpx.Client(
        base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {admin}"}
    )
    agents = []
    try:
        api.put("/users/1/password", json={"password": PASSWORD}).raise_for_status()
        made = api.post("/users", json={"name": "rita", "role": "researcher", "password": PASSWORD})
        made.raise_for_status()
        for name, config in configs.items():
            token = api.post("/sites", json={"name": name}).json()["enrolment_token"]
            enrol(server.url, token, config)
            agents.append(start_agent(config, folder / f"agent-{name}.log"))
        yield server
    finally:
        api.close()
        stop_agents(agents)
        server.stop()


def _scan(page, name: str) -> None:
    """Screenshot and axe-core check of the page as SHOTS/NAME.png."""
    scan(page, SHOTS / f"{name}.png")


def _sign_in_first_time(page, url: str, name: str) -> str:
    """Sign in, enrol TOTP from the page's key, save the recovery codes; the TOTP secret."""
    page.goto(url + "/signin")
    _scan(page, "signin")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/signin/enrol")
    secret = page.locator("#totp-secret").inner_text()
    _scan(page, f"enrol-{name}")
    page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm and sign in").click()
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.get_by_role("link", name="I have saved them: continue").click()
    page.wait_for_url("**/projects")
    return secret


def test_researcher_signs_in_with_totp_and_sees_counts_arrive(browser, hub):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in_first_time(page, hub.url, "rita")
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["flip_session"]["httpOnly"] and cookies["flip_session"]["sameSite"] == "Strict"
    _scan(page, "projects-empty")

    page.locator("#pname").fill("Diabetes outcomes")
    page.locator("#pdesc").fill("Who has type 2 diabetes, by site.")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url("**/projects/*")
    for site in ("north", "tiny"):
        page.locator("#site").fill(site)
        page.get_by_role("button", name="Invite").click()
        page.get_by_role("cell", name=site, exact=True).wait_for()
    _scan(page, "project")

    page.get_by_role("link", name="Build a cohort").click()
    page.get_by_label("Cohort name").fill("type 2 diabetes")
    page.get_by_label("Concept id, code or name").fill("type 2 diabetes")
    page.get_by_role("button", name="Search", exact=True).click()
    found = page.locator('#concepts tr[data-concept="201826"]')
    found.wait_for()
    page.get_by_label("Add to").select_option("include-0")
    found.get_by_role("button", name="Add").click()
    assert page.locator("#include-0-concepts").input_value() == "201826"
    assert page.locator("#include-0-table").input_value() == "condition_occurrence"
    page.get_by_label("age (ten-year bins)").check()
    definition = page.locator("#definition")
    assert '"concept_ids": [\n        201826' in definition.input_value(), "JSON follows the form"
    _scan(page, "cohort-builder")
    page.get_by_role("button", name="Ask the sites", exact=True).click()
    page.wait_for_url("**/queries/*")

    page.locator("#live[data-final]").wait_for(state="attached", timeout=90_000)
    answers = page.locator("#answers")
    assert "waiting" not in answers.inner_text()
    north = answers.locator('tr[data-site="north"] td.num').inner_text()
    tiny = answers.locator('tr[data-site="tiny"] td.num').inner_text()
    assert north.isdigit() and int(north) >= 10
    assert tiny.startswith("<"), f"the small site's count is suppressed, shown as <N: {tiny}"
    assert "withheld" in page.locator("#total").inner_text()
    _scan(page, "query-answers")

    page.get_by_role("link", name="Diabetes outcomes").click()
    # The catalog's first view loads the task code (Flower, torch) into the hub: seconds.
    page.get_by_role("link", name="Propose a task").click(timeout=180_000)
    page.get_by_role("heading", name="Built-in tasks").wait_for(timeout=180_000)
    _scan(page, "task-catalog")
    page.get_by_role("link", name="Review mace-5y", exact=True).click()
    digest = page.locator("#task-hash").inner_text()
    assert len(digest) == 64
    _scan(page, "task-review")
    page.get_by_role("button", name="Propose this task to the project's sites").click()
    page.wait_for_url("**/projects/*")
    page.locator(f'code[title="{digest}"]').wait_for()
    page.get_by_role("link", name="Models").click()
    _scan(page, "models")

    page.locator('a[href="/account"]').click()
    page.get_by_label("Name", exact=True).fill("laptop")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Create a token").click()
    token = page.locator("#new-token").inner_text()
    assert token.startswith("flip_u_")
    httpx.get(
        hub.url + "/api/v1/projects", headers={"Authorization": f"Bearer {token}"}
    ).raise_for_status()
    page.goto(hub.url + "/account")
    row = page.get_by_role("row").filter(has_text="laptop").inner_text()
    assert "never used" not in row and "active" in row and token not in page.content()
    _scan(page, "account")
    context.close()


def test_admin_pages(browser, hub):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in_first_time(page, hub.url, "admin")
    page.get_by_role("link", name="Users").click()
    page.get_by_role("cell", name="rita", exact=True).wait_for()
    _scan(page, "admin-users")

    page.get_by_role("link", name="Sites").click()
    page.locator("#sname").fill("south")
    page.get_by_role("button", name="Register").click()
    token = page.locator("#enrolment-token").inner_text()
    assert token.startswith("flip_e_")
    last_seen = page.get_by_role("row").filter(has_text="north").inner_text()
    assert "never" not in last_seen, "an agent that polls shows when it was last seen"
    _scan(page, "admin-sites")

    page.get_by_role("link", name="Audit log").click()
    page.get_by_role("button", name="Verify the chain").click()
    expect(page.locator("#verified")).to_contain_text("The chain holds")
    _scan(page, "admin-audit")

    page.get_by_role("link", name="Requests").click()
    _scan(page, "admin-requests")
    page.get_by_role("link", name="Maintenance").click()
    page.get_by_label("Message").fill("Upgrade on Saturday 08:00 UTC")
    page.get_by_role("button", name="Save the banner").click()
    expect(page.locator("#maintenance-banner")).to_contain_text("Upgrade on Saturday")
    _scan(page, "admin-maintenance")
    page.get_by_label("Message").fill("")
    page.get_by_role("button", name="Save the banner").click()
    expect(page.locator("#maintenance-banner")).to_have_count(0)
    context.close()


def test_someone_requests_an_account(browser, hub):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(hub.url + "/signin")
    page.get_by_role("link", name="Request one").click()
    page.get_by_label("User name you would like").fill("newcomer")
    page.get_by_label("Email").fill("newcomer@example.org")
    page.get_by_label("Organisation").fill("St Elsewhere")
    page.get_by_label("What you need an account for").fill("The MACE study")
    _scan(page, "request-account")
    page.get_by_role("button", name="Send the request").click()
    page.locator("#request-sent").wait_for()
    context.close()
