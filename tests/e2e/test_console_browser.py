"""The site console in Debian's Chromium (Playwright), against a real `flip hub serve`, the
site's real `flip site agent` and `flip site console` processes: the site admin signs in,
sees the task a researcher proposed, reads it and approves it; the ledger records the
approval and the hub sees the site approve. Every page is scanned with axe-core for serious
or critical violations, and screenshots go to docs/images/web/console-*.png."""

import subprocess
from pathlib import Path

import httpx
import pytest

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl.tasks import mace_task, task_hash
from flip.hub.client import ResearcherClient
from flip.ports import free_port
from flip.site.status import AgentStatus, status_path
from tests.conftest import build_site
from tests.e2e.browser import chromium, scan
from tests.e2e.processes import FLIP, Hub, cli, enrol, start_agent, stop_agents, wait_for

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "images" / "web"
PASSWORD = "a console browser password"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium for the module."""
    yield from chromium()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A hub, a researcher's project with a task proposed to the site, the site's agent and
    its console (with a console password for dana)."""
    folder = tmp_path_factory.mktemp("console-e2e")
    config = build_site(folder, "north", "csv", 120, seed=5)
    server = Hub(folder, flower=False)
    admin = ResearcherClient(server.url, server.start())
    agents, console = [], None
    try:
        enrol(server.url, admin.create_site("north"), config)
        rita = ResearcherClient(server.url, admin.create_user("rita", "researcher"))
        pid = rita.create_project("Cardiology risk")
        rita.invite(pid, ["north"])
        spec = mace_task(0)
        digest = task_hash(spec)
        rita.propose_task(pid, digest, spec.kind, spec.model_dump(mode="json"))
        agents.append(start_agent(config, folder / "agent.log"))
        cli(
            "site",
            "console",
            "set-password",
            "--site-config",
            str(config),
            "--user",
            "dana",
            "--password",
            PASSWORD,
        )
        port = free_port()
        console = subprocess.Popen(
            [*FLIP, "site", "console", "--site-config", str(config), "--port", str(port)],
            stderr=(folder / "console.log").open("w"),
        )
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(url), "the site console", timeout=180)
        site = SiteConfig.load(config)

        def offered():
            with AgentStatus(status_path(site.ledger)) as status:
                return status.tasks(open_only=True)

        wait_for(offered, "the agent to see the proposed task", timeout=180)
        yield {"url": url, "site": site, "pid": pid, "digest": digest, "rita": rita}
    finally:
        if console is not None:
            console.terminate()
            console.wait(timeout=15)
        stop_agents(agents)
        server.stop()


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/signin", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _scan(page, name: str) -> None:
    """Screenshot and axe-core check of the page as SHOTS/console-NAME.png."""
    scan(page, SHOTS / f"console-{name}.png")


def test_the_site_admin_signs_in_and_approves_the_proposed_task(browser, world):
    url, pid, digest = world["url"], world["pid"], world["digest"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(120_000)  # the first task page loads the task contract (torch)
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{url}/approvals")
    assert page.url.startswith(f"{url}/signin")
    _scan(page, "signin")
    page.get_by_label("Your name").fill("dana")
    page.get_by_label("Console password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/approvals")
    task_link = page.get_by_role("link", name="5-year major adverse cardiovascular events")
    assert task_link.is_visible()
    assert page.get_by_role("cell", name="rita").is_visible()
    _scan(page, "approvals")
    task_link.click()
    page.wait_for_url(f"{url}/approvals/{pid}/{digest}")
    assert page.get_by_text(digest).is_visible()
    assert page.locator(".code").first.is_visible()
    _scan(page, "task")
    page.get_by_label("Reason").fill("Reviewed the features and the outcome window")
    page.get_by_role("button", name="Approve this task").click()
    page.wait_for_url(f"{url}/approvals/{pid}/{digest}?done=recorded")
    assert page.get_by_role("status").is_visible()
    with Ledger(world["site"].ledger) as ledger:
        assert ledger.is_approved(str(pid), digest)
        assert ledger.decision(str(pid), digest)["decided_by"] == "dana"
    assert world["rita"].project(pid)["sites"]["north"] == "approved"
    for name in ("policy", "data", "audit", "agent"):
        page.goto(f"{url}/{name}")
        assert page.get_by_role("heading", level=1).is_visible()
        _scan(page, name)
    assert page.get_by_text("yes").first.is_visible(), "the agent reached the hub"
    page.goto(f"{url}/audit")
    assert page.get_by_text("The chain holds").is_visible()
    assert not errors, errors
