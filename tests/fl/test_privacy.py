"""Differential privacy: the accountant's budget, and the site's ceiling enforced at the site."""

import pytest

from flip.config import SiteConfig, SitePolicy
from flip.data.ledger import Ledger
from flip.fl.client import NotApproved, authorise
from flip.fl.privacy import PrivacySpec, privacy_config
from flip.fl.server import run_config
from flip.fl.tasks import mace_task, task_hash


def test_budget_grows_with_rounds_and_shrinks_with_noise():
    spec = PrivacySpec(noise_multiplier=1.0, clipping_norm=1.0)
    assert spec.epsilon(20) > spec.epsilon(10) > spec.epsilon(1) > 0
    assert PrivacySpec(noise_multiplier=4.0, clipping_norm=1.0).epsilon(10) < spec.epsilon(10)
    assert spec.epsilon(10, sampling_rate=0.1) < spec.epsilon(10)
    budget = spec.budget(10)
    assert budget["accountant"] == "RDP (dp-accounting)" and budget["epsilon"] == round(
        spec.epsilon(10), 4
    )


def _site(tmp_path, max_epsilon):
    return SiteConfig(
        name="s",
        store=str(tmp_path / "none.duckdb"),
        ledger=str(tmp_path / "l.sqlite"),
        policy=SitePolicy(max_epsilon=max_epsilon),
    )


def _approved(tmp_path, spec, strategy="fedavg"):
    """The config a server running `spec` sends with round 1, once the site approved it."""
    Ledger(tmp_path / "l.sqlite").decide("9", task_hash(spec), "approved", by="admin")
    config = run_config("9", spec)
    config.update({**privacy_config(spec.privacy, strategy), "server-round": 1})
    return config


def test_site_ceiling_on_epsilon_is_enforced_from_the_spec(tmp_path):
    site = _site(tmp_path, max_epsilon=5.0)
    plain = mace_task()
    with pytest.raises(NotApproved, match="requires differential privacy"):
        authorise(site, _approved(tmp_path, plain))
    loose = plain.model_copy(
        update={"rounds": 10, "privacy": PrivacySpec(noise_multiplier=0.5, clipping_norm=1)}
    )
    with pytest.raises(NotApproved, match="above the site's ceiling"):
        authorise(site, _approved(tmp_path, loose))
    tight = plain.model_copy(
        update={"rounds": 10, "privacy": PrivacySpec(noise_multiplier=5.0, clipping_norm=1)}
    )
    config = _approved(tmp_path, tight)
    assert authorise(site, config) == tight


def test_a_round_beyond_the_approved_rounds_is_refused(tmp_path):
    site = _site(tmp_path, max_epsilon=None)
    spec = mace_task().model_copy(update={"rounds": 3})
    config = _approved(tmp_path, spec)
    config["server-round"] = 3
    assert authorise(site, config) == spec
    config["server-round"] = 4
    with pytest.raises(NotApproved, match="beyond the 3 rounds"):
        authorise(site, config)


def test_a_missing_round_number_is_refused_not_skipped(tmp_path):
    site = _site(tmp_path, max_epsilon=None)
    config = _approved(tmp_path, mace_task().model_copy(update={"rounds": 3}))
    del config["server-round"]
    with pytest.raises(NotApproved, match="named no round number"):
        authorise(site, config)
    config["server-round"] = "1"
    with pytest.raises(NotApproved, match="named no round number"):
        authorise(site, config)


def test_adaptive_clipping_wraps_the_strategy_in_flowers_adaptive_wrapper_at_the_same_budget():
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideAdaptiveClipping, FedAvg

    from flip.fl.privacy import count_noise, with_privacy

    fixed = PrivacySpec(noise_multiplier=0.8, clipping_norm=2.0)
    adaptive = fixed.model_copy(update={"adaptive": True, "target_quantile": 0.7})
    assert adaptive.epsilon(10) == fixed.epsilon(10)
    assert adaptive.budget(10)["clipping"] == "server-side adaptive"
    server = with_privacy(FedAvg(), adaptive, n_sites=3)
    assert isinstance(server, DifferentialPrivacyServerSideAdaptiveClipping)
    assert server.clipping_norm == 2.0
    assert server.target_clipped_quantile == pytest.approx(0.3), "70% unclipped: 30% clipped"
    server._geometric_update(clipped_fraction=1.0)
    grown = server.clipping_norm
    assert grown > 2.0, "all clipped: the norm grows"
    server._geometric_update(clipped_fraction=0.0)
    assert server.clipping_norm < grown, "none clipped: it shrinks"
    assert server.clipped_count_stddev == count_noise(adaptive, 3) == 0.8
    assert 0.8 < server.noise_multiplier < 0.8 / 0.75**0.5 + 1e-9, "z split as Flower does"
    assert count_noise(adaptive, 40) == 2.0, "Flower's sites / 20 where it is enough"


def test_a_site_clipping_its_own_update_takes_no_norm_from_the_server():
    with pytest.raises(ValueError, match="server-side only"):
        PrivacySpec(clipping="client", adaptive=True, noise_multiplier=1, clipping_norm=1)
    with pytest.raises(ValueError, match="set clipping: client"):
        PrivacySpec(level="record", noise_multiplier=1, clipping_norm=1)
    local = PrivacySpec(clipping="client", noise_multiplier=1, clipping_norm=1)
    from flwr.serverapp.strategy import FedAdam

    from flip.fl.privacy import with_privacy

    strategy = FedAdam()
    assert with_privacy(strategy, local, 3) is strategy, "the sites noise: no server noise"


@pytest.mark.slow
def test_a_central_dp_run_is_accepted_by_its_sites_and_charged_to_their_budgets(tmp_path):
    import json

    from flip.fl.runtime.simulation import simulate
    from flip.fl.server import task_server_app
    from tests.conftest import build_site

    privacy = PrivacySpec(noise_multiplier=1.0, clipping_norm=1.0)
    spec = mace_task().model_copy(update={"rounds": 3, "privacy": privacy})
    sites = [build_site(tmp_path, name, "csv", 120) for name in ("alpha", "beta")]
    for path in sites:
        Ledger(SiteConfig.load(path).ledger).decide("p", task_hash(spec), "approved", by="x")
    app, result = task_server_app("p", spec, rounds=3, n_sites=2)
    simulate(app, sites)
    assert len(result.rounds) == 3 and set(result.per_site) == {"alpha", "beta"}
    for path in sites:
        entries = Ledger(SiteConfig.load(path).ledger).entries()
        assert not [e for e in entries if e["action"] == "run.refused"]
        trained = [json.loads(e["detail"]) for e in entries if e["action"] == "run.trained"]
        spent = sorted(t["epsilon_run"] for t in trained)
        assert spent == [round(privacy.epsilon(k), 6) for k in (1, 2, 3)]
        assert trained[-1]["epsilon_total"] == spent[-1]
