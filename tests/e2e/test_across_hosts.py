"""The hub with its SuperLink and each site with its agent and SuperNode in network namespaces
of their own, as on separate machines: TLS and node auth on, the sites reaching the hub
outbound only. A whole journey (enrol, count, approve, train, results); one site's link
is cut mid-run for 100 s and restored: the run completes every round, and the site
trains in the next run. (That a site whose replies stop is left out of a round after
the round timeout is tested on loopback, in tests/fl/test_deployment.py.)"""

import json
import re
import subprocess
import time

import httpx
import pytest

from flip.data.ledger import Ledger
from flip.fl.tasks import mace_task, task_hash
from flip.hub.client import ResearcherClient
from tests.conftest import IN_CI, build_site
from tests.e2e import netns
from tests.e2e.processes import FLIP, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HUB_PORT, FLOWER_PORT = 8700, 9092
HUB_URL = f"http://{netns.HUB_ADDRESS}:{HUB_PORT}"
#: Round 1 before the cut, round 2 without beta: all the assertions need.
ROUNDS = 2
#: Long enough for a first message's cold start (extraction included) on 2 busy cores.
ROUND_TIMEOUT = 90
#: The cut lasts at least this long, whenever the run ends: longer than an agent's long
#: poll can stay in flight (its 30 s timeout plus the 20 s wait), so beta always notices.
LEAST_CUT = 60
LOOPBACK = ("127.0.0.1:", "[::1]:", "[::ffff:127.0.0.1]:")


@pytest.fixture
def network():
    if reason := netns.unavailable():
        if IN_CI:
            pytest.fail(f"CI runs as root with iproute2: {reason}")
        pytest.skip(reason)
    with netns.network() as made:
        yield made


def _serve_hub(net, folder) -> tuple[subprocess.Popen, str]:
    command = [
        *FLIP,
        "hub",
        "serve",
        "--db",
        f"sqlite:///{folder / 'hub.sqlite'}",
        "--host",
        "0.0.0.0",
        "--port",
        str(HUB_PORT),
        "--signing-key",
        str(folder / "hub-signing.key"),
        "--log-level",
        "warning",
        "--flower",
        "--flower-port",
        str(FLOWER_PORT),
        "--flower-address",
        netns.HUB_ADDRESS,
        "--flower-dir",
        str(folder / "hub-flower"),
        "--round-timeout",
        str(ROUND_TIMEOUT),
    ]
    log = folder / "hub.log"
    with log.open("w") as out:
        process = subprocess.Popen(net.command(net.hub, *command), stderr=out)

    def token() -> str | None:
        found = re.search(r"admin token .*: (\S+)", log.read_text())
        return found and found.group(1)

    def up() -> bool:
        try:
            return httpx.get(f"{HUB_URL}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    admin = wait_for(token, "the hub's admin token", timeout=120)
    wait_for(lambda: net.caller(net.hub)(up), "the hub to answer", timeout=120)
    return process, admin


def _trained(config, project: int) -> int:
    entries = Ledger(config.parent / "ledger.sqlite").entries()
    return sum(
        e["action"] == "run.trained" and json.loads(e["detail"])["project"] == str(project)
        for e in entries
    )


def test_hub_and_sites_on_separate_hosts_survive_a_cut_link(network, tmp_path):
    net = network
    configs = {
        name: build_site(tmp_path, name, "csv", 200, seed=11 + i)
        for i, name in enumerate(("alpha", "beta"))
    }
    for name in configs:
        net.add_site(name)
    hub, token = _serve_hub(net, tmp_path)
    call = net.caller(net.hub)
    agents: list[subprocess.Popen] = []
    try:
        admin = call(ResearcherClient, HUB_URL, token)
        researcher = call(ResearcherClient, HUB_URL, call(admin.create_user, "rita", "researcher"))
        for name, config in configs.items():
            enrol = net.command(net.sites[name], *FLIP, "site", "enrol", "--hub", HUB_URL)
            enrol += ["--token", call(admin.create_site, name), "--site-config", str(config)]
            subprocess.run(enrol, check=True, capture_output=True, timeout=120)
            agent = [*FLIP, "site", "agent", "--site-config", str(config), "--interval", "0.2"]
            log = (tmp_path / f"agent-{name}.log").open("w")
            agents.append(subprocess.Popen(net.command(net.sites[name], *agent), stderr=log))

        project = call(researcher.create_project, "across hosts")
        call(researcher.invite, project, list(configs))
        query = call(
            researcher.create_query,
            project,
            "diabetes",
            {"name": "d", "include": [{"table": "condition_occurrence", "concept_ids": [201826]}]},
        )

        def counted():
            answer = call(researcher.query, query)
            return None if answer["pending"] else answer["results"]

        counts = wait_for(counted, "the sites' counts", timeout=120)
        assert set(counts) == {"alpha", "beta"}

        spec = mace_task()
        digest = task_hash(spec)
        call(researcher.propose_task, project, digest, spec.kind, spec.model_dump(mode="json"))
        for name, config in configs.items():  # the site tells the hub: from its own host
            approve = [*FLIP, "site", "approve", str(project), digest, "--site-config", str(config)]
            subprocess.run(net.command(net.sites[name], *approve), check=True, timeout=120)

        def start(rounds: int) -> int:
            run = call(researcher.create_run, project, digest, rounds, runtime="deployment")
            wait_for(lambda: len(call(researcher.run, run)["sites"]) == 2, "joins", timeout=120)
            call(researcher.set_run_status, run, "running")
            return run

        def ended(run: int):
            state = call(researcher.run, run)
            return state if state["status"] != "running" else None

        first = start(ROUNDS)
        wait_for(lambda: call(researcher.run, first)["round_metrics"], "round 1", timeout=600)
        for name in configs:  # a site listens on nothing another host can reach
            listening = net.listening(net.sites[name])
            assert listening and all(a.startswith(LOOPBACK) for a in listening), listening
        assert any(a.endswith(f":{FLOWER_PORT}") for a in net.listening(net.hub))
        net.cut("beta")
        cut_at = time.monotonic()
        while (cut := time.monotonic() - cut_at) < LEAST_CUT or (cut < 100 and not ended(first)):
            time.sleep(1)
        net.restore("beta")
        final = wait_for(lambda: ended(first), "the first run to end", timeout=600)

        assert final["status"] == "completed", final
        assert len(final["round_metrics"]) == ROUNDS
        assert "alpha" in final["results"]["per_site"]
        assert _trained(configs["alpha"], project) == ROUNDS
        assert "hub unreachable" in (tmp_path / "agent-beta.log").read_text(), "beta was cut off"

        beta_before = _trained(configs["beta"], project)
        second = start(1)
        again = wait_for(lambda: ended(second), "the second run to end", timeout=600)
        assert again["status"] == "completed", again
        assert set(again["results"]["per_site"]) == {"alpha", "beta"}
        assert _trained(configs["beta"], project) == beta_before + 1
    finally:
        for agent in agents:
            agent.terminate()
        for agent in agents:
            try:
                agent.wait(timeout=15)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        hub.terminate()
        hub.wait(timeout=30)


def test_namespaces_are_refused_without_root_with_a_reason(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert netns.unavailable() == "making network namespaces needs root"
