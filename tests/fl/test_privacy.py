"""Differential privacy: the accountant's budget, and the site's ceiling enforced at the site."""

import pytest

from flip.config import SiteConfig, SitePolicy
from flip.data.ledger import Ledger
from flip.fl.client import NotApproved, authorise
from flip.fl.privacy import PrivacySpec
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


def _approved(tmp_path, spec):
    Ledger(tmp_path / "l.sqlite").decide("9", task_hash(spec), "approved", by="admin")
    return run_config("9", spec)


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
