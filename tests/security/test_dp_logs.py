"""Issue 19, DP and shared logs: under differential privacy the exact training loss (an
exact per-site statistic the DP guarantee does not cover) stays at the site; a site that
shares its run logs sends the hub its DP rounds without it."""

from flip.config import SitePolicy
from flip.data.ledger import Ledger
from flip.site.agent import SiteAgent
from tests.site.test_agent import _approved_run, world  # noqa: F401 (a fixture)


def test_a_dp_rounds_shared_log_entry_carries_no_loss(world):  # noqa: F811
    _, site, client, researcher = world
    pid, digest, run = _approved_run(site, client, researcher, rounds=2)
    site.policy = SitePolicy(share_logs=True)
    agent = SiteAgent(site, client)
    agent.run_once()
    about = {"project": str(pid), "task_hash": digest, "n_train": 90, "loss": 0.4321}
    with Ledger(site.ledger) as ledger:  # what the ClientApp records of a DP and a plain round
        ledger.record(
            "run.trained",
            about | {"round": 1, "private": True, "epsilon_run": 0.5, "epsilon_total": 0.5},
        )
        ledger.record("run.trained", about | {"round": 2})
    agent.run_once()
    trained = [e for e in researcher.run(run)["logs"]["st-a"] if e["action"] == "run.trained"]
    assert [e["detail"]["round"] for e in trained] == [1, 2]
    assert "loss" not in trained[0]["detail"], "the exact loss of a DP round stays at the site"
    assert trained[0]["detail"]["epsilon_run"] == 0.5
    assert trained[1]["detail"]["loss"] == 0.4321
    assert all("n_train" not in e["detail"] for e in trained)
