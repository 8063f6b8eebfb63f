"""A site scores with a registered custom task's model only once it approved the task."""

from pathlib import Path

import pytest
import torch

from flip.cli.site import _sandbox
from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl.registry import RegistryError, register
from flip.fl.tasks import TaskSpec, mace_task, task_hash

CODE = (
    "import torch\n\ndef new_model(n_features, seed):\n    return torch.nn.Linear(n_features, 1)\n"
)


def test_scoring_a_custom_model_needs_the_sites_config_and_its_approval(tmp_path: Path):
    spec = TaskSpec.model_validate(
        {**mace_task(scaling="fixed").model_dump(), "kind": "custom", "code": CODE}
    )
    lineage = {
        "task": "custom",
        "task_spec": spec.model_dump(mode="json"),
        "task_hash": task_hash(spec),
    }
    record = register(
        tmp_path / "registry", "custom", torch.nn.Linear(spec.data.width, 1).state_dict(), lineage
    )
    site = SiteConfig(name="alpha", store=str(tmp_path / "site/store.duckdb"), ledger="ledger.db")
    site.ledger = str(tmp_path / "site" / "ledger.db")
    site.policy.custom_seconds = 30
    (tmp_path / "site").mkdir()
    site_yaml = tmp_path / "site" / "site.yaml"
    site.save(site_yaml)
    with pytest.raises(RegistryError, match="give --site-config"):
        _sandbox(record, None)
    with pytest.raises(RegistryError, match="has not approved its custom task"):
        _sandbox(record, site_yaml)
    with Ledger(site.ledger) as ledger:
        ledger.decide("p", task_hash(spec), "declined", by="admin")
    with pytest.raises(RegistryError, match="has not approved"):
        _sandbox(record, site_yaml)
    with Ledger(site.ledger) as ledger:
        ledger.decide("p", task_hash(spec), "approved", by="admin")
    limits = _sandbox(record, site_yaml)
    assert limits.seconds == 30 and str(tmp_path / "site") in limits.hidden
    assert not limits.unconfined
