"""The site's registry of pretrained weights: hashed on adding, resolved only by the hash a task
names, every change and refusal chained in the ledger."""

import hashlib
import json

import pytest
import torch

from flip.data.ledger import Ledger, LedgerTampered
from flip.data.pretrained import (
    PretrainedError,
    add_model,
    registered,
    remove_model,
    resolve,
    weights_sha256,
)


@pytest.fixture
def encoder_file(tmp_path):
    """A small encoder's weights, saved by the test as a site would keep them."""
    torch.manual_seed(0)
    path = tmp_path / "encoder.pt"
    torch.save(torch.nn.Linear(8, 4).state_dict(), path)
    return path


def test_a_file_hashes_to_its_sha256_and_a_folder_to_its_manifest(tmp_path, encoder_file):
    assert weights_sha256(encoder_file) == hashlib.sha256(encoder_file.read_bytes()).hexdigest()
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "w.bin").write_bytes(b"\x00\x01")
    first = weights_sha256(folder)
    (folder / "sub" / "w.bin").write_bytes(b"\x00\x02")
    assert weights_sha256(folder) != first
    with pytest.raises(PretrainedError, match="no such file"):
        weights_sha256(tmp_path / "absent")


def test_add_resolve_and_remove_are_audited(tmp_path, encoder_file):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    sha = weights_sha256(encoder_file)
    entry = add_model(ledger, "enc", encoder_file, "admin", sha256=sha.upper())
    assert entry["sha256"] == sha and entry["bytes"] == encoder_file.stat().st_size
    assert registered(ledger)["enc"]["path"] == str(encoder_file.resolve())
    assert resolve(ledger, "enc", sha) == encoder_file.resolve()
    remove_model(ledger, "enc", "admin")
    assert registered(ledger) == {}
    with pytest.raises(PretrainedError, match="no model 'enc' is registered"):
        resolve(ledger, "enc", sha)
    actions = [e["action"] for e in ledger.entries()]
    assert actions == ["model.added", "model.removed", "model.refused"]
    assert ledger.verify() is None


def test_the_site_refuses_other_bytes_than_the_task_or_admin_names(tmp_path, encoder_file):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    with pytest.raises(PretrainedError, match=r"not the 0{64} named: not registered"):
        add_model(ledger, "enc", encoder_file, "admin", sha256="0" * 64)
    assert registered(ledger) == {}
    sha = add_model(ledger, "enc", encoder_file, "admin")["sha256"]
    with pytest.raises(PretrainedError, match=r"not the task's 1{64}: refused"):
        resolve(ledger, "enc", "1" * 64)
    torch.save(torch.nn.Linear(8, 4).state_dict(), encoder_file)  # swapped after registering
    with pytest.raises(PretrainedError, match=r"now hashes to .* not the .* registered"):
        resolve(ledger, "enc", sha)
    refused = [json.loads(e["detail"]) for e in ledger.entries() if e["action"] == "model.refused"]
    assert len(refused) == 3 and all(r["reason"] for r in refused)
    with pytest.raises(PretrainedError, match="model name"):
        add_model(ledger, "../x", encoder_file, "admin")


def test_an_edited_registry_entry_is_refused_as_tampering(tmp_path, encoder_file):
    from sqlalchemy import text

    ledger = Ledger(tmp_path / "ledger.sqlite")
    add_model(ledger, "enc", encoder_file, "admin")
    other = tmp_path / "other.pt"
    other.write_bytes(b"x")
    with ledger.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit SET detail = replace(detail, :a, :b)"),
            {"a": str(encoder_file.resolve()), "b": str(other)},
        )
    with pytest.raises(LedgerTampered):
        registered(ledger)


def test_flip_site_models_add_list_remove(tmp_path, encoder_file):
    from typer.testing import CliRunner

    from flip.cli.app import app
    from flip.config import SiteConfig

    SiteConfig(name="s", store="store.duckdb", ledger="ledger.sqlite").save(tmp_path / "site.yaml")
    config = ["--site-config", str(tmp_path / "site.yaml")]
    runner = CliRunner()
    sha = weights_sha256(encoder_file)
    added = runner.invoke(app, ["site", "models", "add", "enc", str(encoder_file), *config])
    assert added.exit_code == 0 and sha in added.output
    listed = runner.invoke(app, ["site", "models", "list", "--json", *config])
    assert json.loads(listed.output)["enc"]["sha256"] == sha
    bad = runner.invoke(
        app, ["site", "models", "add", "x", str(encoder_file), "--sha256", "f" * 64, *config]
    )
    assert bad.exit_code == 1 and "not registered" in bad.output
    assert runner.invoke(app, ["site", "models", "remove", "enc", *config]).exit_code == 0
    gone = runner.invoke(app, ["site", "models", "remove", "enc", *config])
    assert gone.exit_code == 1 and "no model 'enc'" in gone.output


def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch):
    """`flip site models add NAME "$(python -c ...)"` whose command printed nothing."""
    from typer.testing import CliRunner

    from flip.cli.app import app
    from flip.config import SiteConfig

    SiteConfig(name="s", store="store.duckdb", ledger="ledger.sqlite").save(tmp_path / "site.yaml")
    (tmp_path / "weights.bin").write_bytes(b"not these")
    monkeypatch.chdir(tmp_path)
    empty = CliRunner().invoke(
        app, ["site", "models", "add", "enc", "", "--site-config", "site.yaml"]
    )
    assert empty.exit_code == 2 and "empty" in empty.output
    listed = CliRunner().invoke(
        app, ["site", "models", "list", "--json", "--site-config", "site.yaml"]
    )
    assert json.loads(listed.output) == {}


def test_a_path_that_is_neither_file_nor_folder_is_named_as_such(tmp_path):
    with pytest.raises(PretrainedError, match="/dev/null: not a regular file or a folder"):
        weights_sha256("/dev/null")


def test_folders_whose_manifests_could_read_alike_are_refused(tmp_path):
    one, other = tmp_path / "one", tmp_path / "other"
    one.mkdir()
    other.mkdir()
    (one / "a").write_bytes(b"x")
    (one / "b").write_bytes(b"y")
    y = hashlib.sha256(b"y").hexdigest()
    (other / f"a\n{y}  b").write_bytes(b"x")  # its manifest line would be one's two lines
    weights_sha256(one)
    with pytest.raises(PretrainedError, match="line break"):
        weights_sha256(other)


def test_a_folder_linking_to_another_folder_is_refused_not_half_hashed(tmp_path):
    folder, outside = tmp_path / "model", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    (outside / "pooling.bin").write_bytes(b"a")
    (folder / "pooling").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PretrainedError, match=r"pooling: links to a folder"):
        weights_sha256(folder)
    (folder / "pooling").unlink()
    (folder / "linked.bin").symlink_to(outside / "pooling.bin")  # a linked file is hashed
    first = weights_sha256(folder)
    (outside / "pooling.bin").write_bytes(b"b")
    assert weights_sha256(folder) != first
