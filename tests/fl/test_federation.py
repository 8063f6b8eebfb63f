"""Federated training in Flower's simulation runtime, and the site's own approval check."""

import json

import pytest
from flwr.app import ConfigRecord

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl.client import NotApproved, authorise
from flip.fl.runtime.simulation import simulate
from flip.fl.server import run_config, task_server_app
from flip.fl.tasks import mace_task, task_hash
from tests.conftest import build_site


def test_authorise_refuses_unapproved_tampered_and_disallowed_tasks(tmp_path):
    site = SiteConfig(
        name="s", store=str(tmp_path / "none.duckdb"), ledger=str(tmp_path / "l.sqlite")
    )
    spec = mace_task()
    config = run_config("7", spec)
    config["server-round"] = 1
    with pytest.raises(NotApproved, match="not approved"):
        authorise(site, config)
    Ledger(site.ledger).decide("7", task_hash(spec), "approved", by="admin")
    assert authorise(site, config) == spec
    tampered = ConfigRecord({**dict(config), "task": mace_task(5).model_dump_json()})
    with pytest.raises(NotApproved, match="does not hash"):
        authorise(site, tampered)
    site.policy.allowed_task_kinds = []
    with pytest.raises(NotApproved, match="policy"):
        authorise(site, config)
    refusals = [e for e in Ledger(site.ledger).entries() if e["action"] == "run.refused"]
    assert len(refusals) == 3


@pytest.mark.slow
def test_simulation_trains_approved_sites_and_never_reads_an_unapproved_one(tmp_path):
    spec = mace_task()
    approved = [
        SiteConfig.load(build_site(tmp_path, "alpha", "fhir-ndjson", 300)),
        SiteConfig.load(build_site(tmp_path, "beta", "csv", 300)),
    ]
    for config in approved:
        Ledger(config.ledger).decide("p", task_hash(spec), "approved", by="admin")
    folder = tmp_path / "gamma"
    folder.mkdir()
    missing_store = folder / "store-that-does-not-exist.duckdb"
    refuser = SiteConfig(
        name="gamma", store=str(missing_store), ledger=str(folder / "ledger.sqlite")
    )
    refuser.save(folder / "site.yaml")

    rounds = []
    app, result = task_server_app(
        "p", spec, rounds=3, n_sites=2, on_round=lambda r, m: rounds.append(r)
    )
    simulate(app, [tmp_path / n / "site.yaml" for n in ("alpha", "beta", "gamma")])

    assert rounds == [1, 2, 3]
    assert set(result.per_site) <= {"alpha", "beta"} and result.per_site
    assert all(m["auroc"] > 0.6 for m in result.per_site.values())
    assert not missing_store.exists()
    refusals = [e for e in Ledger(refuser.ledger).entries() if e["action"] == "run.refused"]
    assert refusals
    for config in approved:
        trained = [
            json.loads(e["detail"])
            for e in Ledger(config.ledger).entries()
            if e["action"] == "run.trained"
        ]
        # Flower samples the sites connected at each round's start, so a site may
        # sit one out; every round it trained is in its own log, once.
        numbers = [t["round"] for t in trained]
        assert numbers and sorted(set(numbers)) == numbers and set(numbers) <= {1, 2, 3}
        assert all(t["n_train"] > 0 and t["task_hash"] == task_hash(spec) for t in trained)


@pytest.mark.slow
def test_a_multimodal_task_federates_where_the_sites_allow_it(tmp_path):
    from flip.fl.tasks import mace_modal_task

    spec = mace_modal_task("multimodal")
    for name, fmt in (("alpha", "fhir-bundle"), ("beta", "csv")):
        site = SiteConfig.load(build_site(tmp_path, name, fmt, 400, images=True))
        site.policy.allowed_task_kinds = ["multimodal"]
        site.save(tmp_path / name / "site.yaml")
        Ledger(site.ledger).decide("p", task_hash(spec), "approved", by="admin")
    app, result = task_server_app("p", spec, rounds=2, n_sites=2)
    simulate(app, [tmp_path / n / "site.yaml" for n in ("alpha", "beta")])
    assert result.per_site and all(m["auroc"] > 0.6 for m in result.per_site.values())
    assert {"fusion.weight", "notes.notes.weight"} <= set(result.state_dict)
    assert any(name.startswith("image.cnn.") for name in result.state_dict)


@pytest.mark.slow
def test_a_round_leaves_out_a_straggler_that_answers_after_the_round_timeout():
    import torch
    from flwr.app import ArrayRecord, Context, Message, RecordDict
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy.strategy_utils import sample_nodes

    from flip.fl.runtime.simulation import run_in_simulation
    from flip.fl.server import make_server_app
    from tests.fl.straggler_app import app as straggler_client

    start = torch.nn.Linear(3, 1, bias=False)
    torch.nn.init.zeros_(start.weight)
    # Both sites first answer a query with no timeout, so both Ray actors have started before
    # the round: the round's timeout then races no actor start-up, and the straggler, which
    # sleeps past it on one actor, cannot hold up the prompt site's answer on the other.
    timeout = 10.0
    app, result = make_server_app(
        ConfigRecord({"task": "straggler", "straggle": timeout + 5}),
        ArrayRecord(start.state_dict()),
        rounds=1,
        n_sites=2,
        timeout=timeout,
        evaluate_final=False,
    )
    warmed = ServerApp()

    @warmed.main()
    def main(grid: Grid, context: Context) -> None:
        _, nodes = sample_nodes(grid, 2, 2)
        asks = [Message(RecordDict(), dst_node_id=n, message_type="query") for n in nodes]
        assert len(list(grid.send_and_receive(asks))) == 2
        app(grid=grid, context=context)

    run_in_simulation(warmed, straggler_client, 2, cpus=2)
    # Only the prompt site's step (+1) is in the global model; the straggler's (+100) is not.
    assert torch.equal(result.state_dict["weight"], torch.ones(1, 3))


def test_rounds_start_once_the_minimum_number_of_sites_is_connected():
    from flip.fl.strategies import make_strategy

    strategy = make_strategy("fedavg", 5, 0.1, min_sites=3)
    assert strategy.min_available_nodes == strategy.min_train_nodes == 3
    assert make_strategy("fedavg", 5, 0.1).min_available_nodes == 5
    with pytest.raises(ValueError, match="between 1 and 5"):
        make_strategy("fedavg", 5, 0.1, min_sites=6)


def test_each_clientapp_refuses_a_task_asking_for_the_other_kind_of_aggregation(tmp_path):
    site = SiteConfig(
        name="s", store=str(tmp_path / "none.duckdb"), ledger=str(tmp_path / "l.sqlite")
    )
    secure = mace_task().model_copy(update={"secure_aggregation": True})
    for spec in (secure, mace_task()):
        Ledger(site.ledger).decide("7", task_hash(spec), "approved", by="admin")

    def first_round(spec):
        return ConfigRecord({**run_config("7", spec), "server-round": 1})

    with pytest.raises(NotApproved, match="must run under secure aggregation"):
        authorise(site, first_round(secure))
    with pytest.raises(NotApproved, match="did not ask for secure aggregation"):
        authorise(site, first_round(mace_task()), secure=True)
    assert authorise(site, first_round(secure), secure=True) == secure


@pytest.mark.slow
def test_a_task_asking_for_secure_aggregation_trains_approved_sites_under_secagg(tmp_path):
    spec = mace_task().model_copy(update={"secure_aggregation": True})
    sites = [build_site(tmp_path, name, "csv", 300) for name in ("alpha", "beta")]
    for config in sites:
        Ledger(SiteConfig.load(config).ledger).decide("p", task_hash(spec), "approved", by="x")
    app, result = task_server_app("p", spec, rounds=2, n_sites=2)
    simulate(app, sites, secure=True)
    assert len(result.rounds) == 2
    assert result.scaling is not None, "federated scaling on Flower's legacy path too"
    assert set(result.per_site) == {"alpha", "beta"}
    assert all(m["auroc"] > 0.6 for m in result.per_site.values())
    assert all("n_train" not in r for r in result.rounds), "no average of training rows"
    for name, config in zip(("alpha", "beta"), sites, strict=True):
        entries = Ledger(SiteConfig.load(config).ledger).entries()
        actions = [e["action"] for e in entries]
        assert actions.count("run.trained") == 2
        # What the site countersigns the run's certificate by: the figures it sent the hub.
        evaluated = json.loads([e for e in entries if e["action"] == "run.evaluated"][-1]["detail"])
        reported = result.per_site[name]
        assert len(reported["data_sha256"]) == 64 and reported["n_train"] > 0
        assert {k: evaluated[k] for k in ("n_train", "n_test", "data_sha256")} == {
            k: reported[k] for k in ("n_train", "n_test", "data_sha256")
        }
