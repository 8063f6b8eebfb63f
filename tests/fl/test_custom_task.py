"""Custom tasks: written by `flip fl new-task`, packed with their code, run once approved."""

import json

import pytest

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl.client import NotApproved, authorise
from flip.fl.runtime.simulation import simulate
from flip.fl.server import run_config, task_server_app
from flip.fl.tasks import TaskSpec, task_hash
from flip.fl.tasks.authoring import TaskFolderError, new_task, pack_task
from flip.fl.tasks.models import TaskCodeError, new_model
from tests.conftest import build_site
from tests.fl.in_process import flip_here as flip


def test_new_task_and_pack_task_make_a_spec_whose_hash_covers_every_byte_of_the_model(tmp_path):
    made = flip("fl", "new-task", "risk-net", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    packed = flip("fl", "pack-task", str(tmp_path / "risk-net"))
    assert packed.returncode == 0, packed.stderr
    spec = TaskSpec.model_validate_json((tmp_path / "risk-net" / "task.json").read_text())
    assert spec.kind == "custom" and "def new_model" in spec.code
    assert packed.stdout.strip() == task_hash(spec)
    model = tmp_path / "risk-net" / "model.py"
    model.write_text(model.read_text().replace("HIDDEN = 16", "HIDDEN = 17"))
    _, changed, _ = pack_task(tmp_path / "risk-net")
    assert changed != task_hash(spec)
    assert flip("fl", "new-task", "risk-net", "--dir", str(tmp_path)).returncode == 1, "exists"


def test_a_broken_task_folder_gets_a_one_line_reason(tmp_path):
    folder = new_task("broken", tmp_path)
    (folder / "model.py").write_text("def new_model(n, seed):\n    return (\n")
    with pytest.raises(TaskFolderError, match=r"model\.py:2"):
        pack_task(folder)
    (folder / "model.py").write_text("x = 1\n")
    spec, _, _ = pack_task(folder)
    with pytest.raises(TaskCodeError, match="no new_model"):
        new_model(spec)
    (folder / "task.yaml").write_text("name: broken\nrounds: 0\n")
    result = flip("fl", "pack-task", str(folder))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1


def test_the_site_runs_no_custom_code_before_it_approves_the_hash(tmp_path):
    marker = tmp_path / "ran"
    folder = new_task("loud", tmp_path)
    code = (folder / "model.py").read_text()
    (folder / "model.py").write_text(code + f"\nopen({str(marker)!r}, 'w').write('ran')\n")
    spec, digest, _ = pack_task(folder)
    site = SiteConfig(name="s", store=str(tmp_path / "x.duckdb"), ledger=str(tmp_path / "l.sqlite"))
    site.policy.allowed_task_kinds = ["custom"]
    with pytest.raises(NotApproved, match="not approved"):
        authorise(site, run_config("1", spec))
    assert not marker.exists()
    Ledger(site.ledger).decide("1", digest, "approved", by="admin")
    new_model(authorise(site, {**run_config("1", spec), "server-round": 1}))
    assert marker.read_text() == "ran"


@pytest.mark.slow
def test_a_custom_task_federates_and_trains_alone(tmp_path):
    spec, digest, path = pack_task(new_task("risk-net", tmp_path))
    spec = spec.model_copy(update={"local_epochs": 3})
    path.write_text(json.dumps(spec.model_dump(mode="json")))
    digest = task_hash(spec)
    configs = []
    for name, fmt in (("alpha", "fhir-ndjson"), ("beta", "csv")):
        config_path = build_site(tmp_path, name, fmt, 300)
        config = SiteConfig.load(config_path)
        config.policy.allowed_task_kinds = ["custom"]
        config.save(config_path)
        Ledger(config.ledger).decide("p", digest, "approved", by="admin")
        configs.append(config_path)
    app, result = task_server_app("p", spec, rounds=3, n_sites=2)
    simulate(app, configs)
    assert set(result.per_site) == {"alpha", "beta"}
    assert all(m["auroc"] > 0.6 for m in result.per_site.values())

    alone = flip(
        "site", "train", "--local", "--site-config", str(configs[0]), "--task", str(path), "--json"
    )
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["task_hash"] == digest


def test_fl_run_task_refuses_what_its_sites_would_refuse_mid_run_in_one_line(tmp_path):
    """More rounds than the task approves (the sites refuse the first one past it) and a
    robust rule tolerating more malicious sites than run are said before the engine starts,
    in one line each, not from a run that fails after Ray's start-up."""
    from flip.fl.tasks import mace_task

    base = mace_task(scaling="fixed").model_dump(mode="json")
    sites = [a for name in ("a", "b") for a in ("--site", str(tmp_path / f"{name}.yaml"))]
    rounds = tmp_path / "rounds.json"
    rounds.write_text(json.dumps({**base, "rounds": 3}))
    result = flip("fl", "run-task", str(rounds), *sites, "--project", "p", "--rounds", "5")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "--rounds 5" in line and "3 rounds" in line, line
    krum = tmp_path / "krum.json"
    options = {"num_malicious_nodes": 3}
    krum.write_text(json.dumps({**base, "strategy": {"name": "krum", "options": options}}))
    result = flip("fl", "run-task", str(krum), *sites, "--project", "p")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "needs at least 9 sites, not 2" in line, line
