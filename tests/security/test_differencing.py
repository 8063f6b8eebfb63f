"""Issue 19 item 6: small-count suppression undone by differencing.

A site holds exactly the issue's numbers: 19 persons with type 2 diabetes (12 women, 7 men)
and 11 persons aged 71 or more, one of them exactly 71. A researcher asks counts through a
real hub (uvicorn on loopback) that the site agent answers; the two attacks of the issue no
longer give away the 7 men or the one 71-year-old.
"""

import json
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import insert

from flip.config import SiteConfig, SitePolicy
from flip.data.cdm import schema
from flip.data.cdm.rows import GENDERS
from flip.data.cdm.store import open_store
from flip.data.cohort import CohortDefinition
from flip.data.cohort.guard import ReleaseGuard
from flip.data.cohort.release import Refused, release
from flip.data.ledger import Ledger
from flip.hub.app import bootstrap_admin, create_app
from flip.hub.client import ResearcherClient
from flip.hub.server import BackgroundServer
from flip.site.agent import SiteAgent
from flip.site.hub_client import HubClient

T2D_CONCEPT = 201826
T2D = {"name": "t2d", "include": [{"table": "condition_occurrence", "concept_ids": [T2D_CONCEPT]}]}
#: (how many, sex, age, type 2 diabetes)
PEOPLE = [
    (12, "female", 50, True),
    (7, "male", 55, True),
    (10, "male", 75, False),
    (1, "male", 71, False),
    (5, "female", 30, False),
    (20, "male", 30, False),
]


def _populate(location: str) -> None:
    store = open_store(location)
    store.create()
    year = datetime.now(UTC).year
    persons, conditions = [], []
    for n, sex, age, diabetic in PEOPLE:
        for _ in range(n):
            pid = len(persons) + 1
            persons.append(
                {
                    "person_id": pid,
                    "gender_concept_id": GENDERS[sex],
                    "year_of_birth": year - age,
                    "race_concept_id": 0,
                    "ethnicity_concept_id": 0,
                    "person_source_value": f"MRN{pid:04d}",
                }
            )
            if diabetic:
                conditions.append(
                    {
                        "condition_occurrence_id": pid,
                        "person_id": pid,
                        "condition_concept_id": T2D_CONCEPT,
                        "condition_start_date": date(2020, 1, 1),
                        "condition_type_concept_id": 32817,
                    }
                )
    with store.begin() as conn:
        conn.execute(insert(schema.person), persons)
        conn.execute(insert(schema.condition_occurrence), conditions)
    store.close()


@pytest.fixture
def site(tmp_path):
    _populate(str(tmp_path / "store.duckdb"))
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    hub = BackgroundServer(app).start()
    admin = ResearcherClient(hub.url, bootstrap_admin(app.state.engine))
    researcher = ResearcherClient(hub.url, admin.create_user("rita", "researcher"))
    config = SiteConfig(
        name="st-a", store=str(tmp_path / "store.duckdb"), ledger=str(tmp_path / "ledger.sqlite")
    )
    client = HubClient(hub.url, HubClient.enrol(hub.url, admin.create_site("st-a")))
    project = researcher.create_project("p")
    researcher.invite(project, ["st-a"])

    def ask(definition: dict, policy: SitePolicy | None = None, in_project: int = project) -> dict:
        config.policy = policy or SitePolicy()
        qid = researcher.create_query(in_project, definition["name"], definition)
        SiteAgent(config, client).run_once()
        return researcher.query(qid)["results"]["st-a"]

    def new_project(name: str) -> int:
        joined = researcher.create_project(name)
        researcher.invite(joined, ["st-a"])
        return joined

    ask.new_project = new_project
    yield ask, config
    client.close()
    hub.stop()


def test_the_sex_differencing_attack_gets_no_count_of_the_men(site):
    ask, config = site
    total = ask(T2D | {"histograms": ["sex"]})
    assert total["count"] == 19
    assert total["histograms"]["sex"] == {"female": None, "male": None}, (
        "7 men are hidden, and the 12 women with them, else 19 - 12 gives the men away"
    )

    women = ask(T2D | {"name": "t2d women", "sex": ["female"]})

    assert women["count"] is None, "19 - 12 would give the 7 men the histogram hid"
    assert women["error"].startswith("refused: ") and "fewer than 10 persons" in women["error"]
    men = ask(T2D | {"name": "t2d men", "sex": ["male"]})
    assert men["count"] is None and men["suppressed"]
    refusals = [e for e in Ledger(config.ledger).entries() if e["action"] == "query.refused"]
    assert len(refusals) == 1


def test_the_age_differencing_attack_does_not_isolate_the_71_year_old(site):
    ask, _ = site
    assert ask({"name": "71 and over", "age_min": 71})["count"] == 11

    older = ask({"name": "72 and over", "age_min": 72})

    assert older["count"] is None and "refused" in older["error"], "11 - 10 isolates one person"


def test_queries_that_isolate_no_one_are_answered_alike_every_time(site):
    ask, _ = site
    assert ask(T2D)["count"] == 19
    assert ask(T2D | {"name": "t2d again"})["count"] == 19, "the same persons: nothing new"
    assert ask({"name": "everyone"})["count"] == 55, "36 more than the 19: no small group"
    assert ask({"name": "men", "sex": ["male"]})["count"] == 38


def test_a_bin_that_would_isolate_is_hidden_with_its_complement(site):
    ask, _ = site
    assert ask(T2D | {"name": "t2d women", "sex": ["female"]})["count"] == 12

    everyone = ask({"name": "everyone", "histograms": ["sex"]})

    assert everyone["count"] == 55
    assert everyone["histograms"]["sex"] == {"female": None, "male": None}, (
        "17 women less the 12 diabetic women released before would isolate 5; "
        "showing the 38 men would give the 17 away (55 - 38)"
    )


def test_the_site_answers_a_project_no_more_queries_than_its_budget(site):
    ask, _ = site
    budget = SitePolicy(query_budget=2)
    assert ask(T2D, budget)["count"] == 19
    assert ask({"name": "everyone"}, budget)["count"] == 55
    third = ask({"name": "men", "sex": ["male"]}, budget)
    assert third["count"] is None and "budget of 2 queries" in third["error"]


def test_a_differencing_refusal_spends_the_budget_as_an_answer_does(site):
    """Each refusal says a small group exists; unbudgeted, a project probes for free."""
    ask, _ = site
    budget = SitePolicy(query_budget=2)
    assert ask(T2D, budget)["count"] == 19
    assert "fewer than 10" in ask(T2D | {"name": "t2d women", "sex": ["female"]}, budget)["error"]
    third = ask({"name": "everyone"}, budget)
    assert third["count"] is None and "budget of 2 queries" in third["error"]


def test_a_project_whose_audit_would_pass_the_site_limit_is_refused_and_others_answered(site):
    """A hub with no query limit cannot grow a project's kept sets until the audit hangs."""
    ask, config = site
    capped = SitePolicy(max_audit_cells=2 * 55)
    assert ask(T2D, capped)["count"] == 19, "this one set over the 55 persons"
    assert ask({"name": "everyone"}, capped)["count"] == 55, "1 kept set and this one"
    over = ask({"name": "71 and over", "age_min": 71}, capped)
    assert over["count"] is None
    assert "2 kept sets" in over["error"] and "max_audit_cells" in over["error"]
    refused = [e for e in Ledger(config.ledger).entries() if e["action"] == "query.refused"]
    reasons = [json.loads(e["detail"])["reason"] for e in refused]
    assert reasons == [over["error"].removeprefix("refused: ")]
    other = ask.new_project("another")
    assert ask({"name": "71 and over", "age_min": 71}, capped, other)["count"] == 11


def test_released_counts_are_rounded_as_the_site_policy_says(site):
    ask, _ = site
    rounded = SitePolicy(round_counts_to=5)
    everyone = ask({"name": "everyone", "histograms": ["sex"]}, rounded)
    assert everyone["count"] == 55
    assert everyone["histograms"]["sex"] == {"female": 15, "male": 40}, "17 and 38"
    assert ask({"name": "71 and over", "age_min": 71}, rounded)["count"] == 10, "11"


def test_the_guard_keeps_its_sets_at_the_site_and_releases_nothing_it_refuses(tmp_path):
    _populate(str(tmp_path / "store.duckdb"))
    store = open_store(tmp_path / "store.duckdb", read_only=True)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    t2d = CohortDefinition.model_validate(T2D)
    release(store, t2d, 10, ReleaseGuard(ledger.engine, "1", "q1", 10, None))
    women = CohortDefinition.model_validate(T2D | {"sex": ["female"]})
    with pytest.raises(Refused):
        release(store, women, 10, ReleaseGuard(ledger.engine, "1", "q2", 10, None))
    other = ReleaseGuard(ledger.engine, "2", "q3", 10, None)
    assert release(store, women, 10, other).count == 12, "another project's releases are its own"
    ledger.close()
    store.close()


def test_two_breakdowns_of_one_answer_do_not_isolate_a_few_against_each_other(tmp_path):
    _populate(str(tmp_path / "store.duckdb"))
    store = open_store(tmp_path / "store.duckdb", read_only=True)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    over_40 = CohortDefinition.model_validate(
        {"name": "40 and over", "age_min": 40, "histograms": ["age", "sex"]}
    )

    answer = release(store, over_40, 10, ReleaseGuard(ledger.engine, "1", "q1", 10, None))

    ages, sexes = answer.histograms["age"], answer.histograms["sex"]
    assert answer.count == 30
    assert ages == {"50-59": 19, "70-79": 11}
    assert sexes == {"female": None, "male": None}, (
        "the 18 men less the 11 in their seventies (all men) are the 7 men of 55; "
        "the 19 in their fifties less the 12 women are the same 7"
    )
    ledger.close()
    store.close()
