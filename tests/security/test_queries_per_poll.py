"""A site's poll carries at most QUERIES_PER_POLL of its unanswered queries, oldest first: a
project's thousands of queries (or a site newly invited to a project that has them) made
every poll, and the hub's read of every site's work, carry every definition at once."""

from flip.hub.routes.agent import QUERIES_PER_POLL

DEFINITION = {"include": [{"domain": "condition", "concept_ids": [201826]}]}


def test_a_poll_brings_the_oldest_queries_and_the_next_poll_the_rest(hub):
    researcher = hub.user("rita", "researcher")
    site = hub.site("a")
    other = hub.site("b")
    pid = hub.call("POST", "/projects", researcher, json={"name": "p"}).json()["id"]
    hub.call("POST", f"/projects/{pid}/sites", researcher, json={"sites": ["a"]})
    made = [
        hub.call(
            "POST",
            f"/projects/{pid}/queries",
            researcher,
            json={"name": f"q{n}", "definition": DEFINITION},
        ).json()["id"]
        for n in range(QUERIES_PER_POLL + 5)
    ]
    # a site invited once the queries were asked gets them by the same rule
    hub.call("POST", f"/projects/{pid}/sites", researcher, json={"sites": ["b"]})

    for token in (site, other):
        first = [q["id"] for q in hub.call("GET", "/agent/work", token).json()["queries"]]
        assert first == made[:QUERIES_PER_POLL]
        answer = {"count": None, "suppressed": True, "threshold": 10}
        for qid in first:
            assert hub.call("POST", f"/agent/queries/{qid}", token, json=answer).status_code == 204
        rest = [q["id"] for q in hub.call("GET", "/agent/work", token).json()["queries"]]
        assert rest == made[QUERIES_PER_POLL:]
