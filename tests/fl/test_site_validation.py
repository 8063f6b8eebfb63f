"""A site evaluates rounds on a validation split held out of its training rows; only the
final evaluation reads its test split."""

import pytest

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl.client import NotApproved, _splits, evaluate_round, fit_and_validation, train_round
from flip.fl.server import run_config
from flip.fl.splits import EVALUATE_SPLIT, VALIDATION_FRACTION
from flip.fl.tasks import mace_task, task_hash
from flip.fl.tasks.models import new_model
from tests.conftest import build_site


@pytest.fixture(scope="module")
def site_yaml(tmp_path_factory):
    return build_site(tmp_path_factory.mktemp("validation"), "alpha", "csv", 160)


def test_rounds_are_evaluated_on_held_out_training_rows_and_the_final_on_the_test_split(
    site_yaml,
):
    site = SiteConfig.load(site_yaml)
    spec = mace_task(scaling="fixed")
    Ledger(site.ledger).decide("p", task_hash(spec), "approved", by="admin")
    config = {**dict(run_config("p", spec)), "server-round": 1}
    train, test = _splits(site, spec, config)
    fit, validation = fit_and_validation(site, spec, config)

    ids = {name: set(s.person_ids) for name, s in [("fit", fit), ("val", validation)]}
    assert ids["fit"] | ids["val"] == set(train.person_ids) and not ids["fit"] & ids["val"]
    assert not set(test.person_ids) & (ids["fit"] | ids["val"])
    assert len(validation.y) == pytest.approx(VALIDATION_FRACTION * len(train.y), abs=1)

    state = new_model(spec).state_dict()
    _, trained = train_round(site, spec, config, state, run=1)
    assert trained["num-examples"] == len(fit.y), "validation rows are not trained on"
    assert evaluate_round(site, spec, config, state, run=1)["num-examples"] == len(validation.y)
    final = {**config, EVALUATE_SPLIT: "test"}
    assert evaluate_round(site, spec, final, state, run=1)["num-examples"] == len(test.y)

    with pytest.raises(NotApproved, match="run 1 is over"):
        evaluate_round(site, spec, {**config, "server-round": 2}, state, run=1)
    site.policy.min_cell_size = len(validation.y) + 1
    with pytest.raises(NotApproved, match="validation split has fewer than"):
        evaluate_round(site, spec, {**config, "server-round": 2}, state, run=2)
