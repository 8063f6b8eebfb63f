"""Issue 19 item 1: no work item takes a site out of the federation.

The hub under uvicorn and the site agent run as separate processes. Hostile items are
put straight into the hub's database, as a hub without the hub-side limits (an older
one, or one an attacker runs) would hand them out: a cohort of 1,200 criteria (DuckDB
gives up binding it), a task whose noise multiplier of 1e300 overflows the epsilon
accountant at a site with max_epsilon, a store that cannot be opened, and the item the
agent died on. Each is refused with a reason the hub sees and the ledger keeps; the
agent goes on polling, and after a restart it does not trip on them again.
"""

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, insert, select

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl.privacy import PrivacySpec
from flip.fl.tasks import mace_task, task_hash
from flip.hub.client import ResearcherClient
from flip.hub.db import queries, tasks, users
from tests.conftest import build_site
from tests.e2e.processes import Hub, cli, enrol, start_agent, stop_agents, wait_for

CRITERION = {"table": "condition_occurrence", "concept_ids": [201826]}
DIABETES = {"name": "diabetes", "include": [CRITERION]}


def _actions(config: SiteConfig) -> list[tuple[str, dict]]:
    with Ledger(config.ledger) as ledger:
        return [(e["action"], orjson.loads(str(e["detail"]))) for e in ledger.entries()]


@pytest.mark.e2e
@pytest.mark.slow
def test_the_agent_refuses_what_it_cannot_handle_and_goes_on(tmp_path):
    config_path = build_site(tmp_path, "alpha", "csv", 60, seed=3)
    config = SiteConfig.load(config_path)
    config.policy.max_epsilon = 5.0
    config.policy.min_cell_size = 2
    config.save(config_path)
    hub = Hub(tmp_path, flower=False)
    admin_token = hub.start()
    admin = ResearcherClient(hub.url, admin_token)
    agents = []
    try:
        researcher = ResearcherClient(hub.url, admin.create_user("rita", "researcher"))
        enrol(hub.url, admin.create_site("alpha"), config_path)
        project = researcher.create_project("p")
        researcher.invite(project, ["alpha"])
        engine = create_engine(hub.db)
        spec = mace_task().model_copy(
            update={"rounds": 3, "privacy": PrivacySpec(noise_multiplier=1e300, clipping_norm=1)}
        )
        with engine.begin() as conn:
            rita = conn.execute(select(users.c.id).where(users.c.name == "rita")).scalar_one()
            hostile = conn.execute(
                insert(queries).values(
                    project_id=project,
                    name="1200 criteria",
                    created_by=rita,
                    definition=orjson.dumps({"name": "x", "include": [CRITERION] * 1200}).decode(),
                )
            ).inserted_primary_key[0]
            conn.execute(
                insert(tasks).values(
                    project_id=project,
                    hash=task_hash(spec),
                    kind=spec.kind,
                    spec=orjson.dumps(spec.model_dump(mode="json")).decode(),
                )
            )
        agents.append(start_agent(config_path, tmp_path / "agent-1.log"))
        fine = researcher.create_query(project, "diabetes", DIABETES)

        def answered(query_id):
            return researcher.query(query_id)["results"].get("alpha")

        assert wait_for(lambda: answered(fine), "the query after the hostile ones")["count"] > 0
        assert agents[0].poll() is None, "the agent is still running"
        refusal = answered(hostile)["error"]
        assert refusal.startswith("refused: invalid cohort definition: include")
        assert "at most 100" in refusal
        declined = wait_for(
            lambda: [d for a, d in _actions(config) if a == "task.declined"], "the task's decline"
        )
        assert "epsilon cannot be computed" in declined[0]["reason"]
        hub_side = httpx.get(
            f"{hub.url}/api/v1/sites/1/activity",
            headers={"Authorization": f"Bearer {admin_token}"},
        ).json()["decisions"]
        assert hub_side[0]["decision"] == "declined"
        assert "epsilon cannot be computed" in hub_side[0]["reason"]
        refused = [d for a, d in _actions(config) if a == "query.refused"]
        assert [d["query"] for d in refused] == [hostile]

        # A restart finds nothing left to trip on.
        assert stop_agents(agents) == [0]
        before = len(_actions(config))
        agents = [start_agent(config_path, tmp_path / "agent-2.log")]
        again = researcher.create_query(project, "diabetes again", DIABETES)
        wait_for(lambda: answered(again), "an answer after the restart")
        assert agents[0].poll() is None
        assert [a for a, _ in _actions(config)[before:]] == ["query.answered"]

        # A store it cannot open: each query is refused with the reason, the agent goes on.
        assert stop_agents(agents) == [0]
        store = config_path.parent / "store.duckdb"
        store.rename(store.with_suffix(".kept"))
        store.write_bytes(b"not a duckdb file" * 100)
        agents = [start_agent(config_path, tmp_path / "agent-3.log")]
        broken = researcher.create_query(project, "diabetes, store broken", DIABETES)
        reason = wait_for(lambda: answered(broken), "a refusal")["error"]
        assert reason.startswith("refused: the site could not handle this query (")
        assert agents[0].poll() is None
        failed = [d for a, d in _actions(config) if a == "query.failed"]
        assert failed and failed[0]["item"] == f"query {broken}"

        # The item the agent died on (killed while counting) is refused at the next start.
        agents[0].kill()
        agents[0].wait()
        agents = []
        store.unlink()
        store.with_suffix(".kept").rename(store)
        died = researcher.create_query(project, "died on", DIABETES)
        config_path.with_name("ledger.in-hand").write_text(f"query {died}", encoding="utf-8")
        agents = [start_agent(config_path, tmp_path / "agent-4.log")]
        after = researcher.create_query(project, "after the death", DIABETES)
        assert wait_for(lambda: answered(after), "the next query")["count"] > 0
        assert answered(died)["error"] == (
            "refused: the site's agent stopped while handling this query"
        )
        assert not config_path.with_name("ledger.in-hand").exists()
        assert agents[0].poll() is None
        with Ledger(config.ledger) as ledger:
            assert ledger.verify() is None
    finally:
        stop_agents(agents)
        hub.stop()
    cli("site", "audit", "--site-config", str(config_path))
