"""The task contract: what data, which model, how to train; content-addressed by SHA-256.

A task's hash covers its configuration (canonical JSON) and the source code that
runs it, so a site that approves a hash approves exactly that code and config.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flip.data.features.adapter import AdapterSpec
from flip.data.features.tabular import Scaling, TabularData, TabularSpec
from flip.fl.privacy import PrivacySpec
from flip.fl.strategies import TREE_STRATEGIES, StrategySpec

#: The kinds a site can personalise (`personal`): FLIP's built-in models over a table.
PERSONAL_KINDS = ("tabular-logreg", "tabular-mlp")

#: What each kind that reads notes or images needs in its data spec.
_NEEDS = {
    "text-classifier": "text",
    "image-cnn": "image",
}


#: The most local epochs and rounds a task may name: beyond them a typo, not a plan.
MAX_EPOCHS, MAX_ROUNDS = 10_000, 100_000


class TaskSpec(BaseModel):
    """A complete, hashable description of one training task."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    kind: Literal[
        "tabular-logreg", "tabular-mlp", "text-classifier", "image-cnn", "multimodal", "custom"
    ] = "tabular-logreg"
    name: str = Field(min_length=1, max_length=200)
    code: str | None = Field(
        None,
        max_length=200_000,
        description="A custom task's module (Python source defining new_model, and optionally "
        "train and evaluate; see docs/task-authoring.md).",
    )
    data: TabularSpec
    learning_rate: float = Field(0.2, gt=0)
    local_epochs: int = Field(5, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(32, ge=1, le=10_000_000)
    l2: float = Field(1e-3, ge=0)
    test_fraction: float = Field(0.25, gt=0, lt=1)
    seed: int = Field(0, ge=-(2**63), le=2**63 - 1)
    rounds: int | None = Field(
        None, ge=1, le=MAX_ROUNDS, description="Rounds the privacy budget is computed for."
    )
    privacy: PrivacySpec | None = None
    image_network: (
        Literal["small-cnn", "resnet18", "resnet34", "densenet121", "densenet-small"] | None
    ) = Field(
        None,
        description="The network over the image (image-cnn, multimodal): the small CNN when "
        "unset, or a MONAI ResNet/DenseNet for real photographs (e.g. RGB 224 x 224); 3D "
        "over a volume (data.image.depth). densenet-small: a DenseNet of three short blocks.",
    )
    strategy: StrategySpec = Field(
        default_factory=StrategySpec,
        description="The Flower strategy that aggregates the sites' updates, and its "
        "hyperparameters (e.g. FedProx's proximal_mu, which every site applies).",
    )
    secure_aggregation: bool = Field(
        False,
        description="Train under SecAgg+: the server sees only the sum of the sites' updates; "
        "each site refuses to run the task any other way.",
    )
    personal: Literal["fedbn", "fedper", "ditto"] | None = Field(
        None,
        description="Personalisation kept at each site and never sent: fedbn (its own batch "
        "norm of the inputs), fedper (its own last layer) or ditto (its own model, pulled "
        "toward the global one by ditto_lambda); each site reports it beside the global model.",
    )
    ditto_lambda: float | None = Field(
        None, ge=0, description="Ditto's pull of each site's own model toward the global one."
    )
    evaluate_every: int | None = Field(
        None,
        strict=True,
        ge=1,
        le=100_000,
        description="In a hub run, send evaluate messages after every k-th round and the last; "
        "the train replies carry the other rounds' validation metrics (flip.fl.carried). "
        "Unset: after the last round only; 1: after every round.",
    )

    @model_validator(mode="after")
    def _custom_tasks_carry_their_code(self) -> TaskSpec:
        if (self.kind == "custom") != (self.code is not None):
            raise ValueError("a custom task carries its model code in `code`; others do not")
        need = _NEEDS.get(self.kind)
        if need is not None and getattr(self.data, need) is None:
            raise ValueError(f"a {self.kind} task reads {need}: give data.{need}")
        if self.secure_aggregation and (self.privacy is not None or self.data.image is not None):
            raise ValueError(
                "secure aggregation sums plain weight vectors: not with differential privacy "
                "or an image model (its batch-norm statistics are not weights)"
            )
        if self.strategy.name in TREE_STRATEGIES:
            raise ValueError(f"strategy {self.strategy.name} aggregates trees, not a torch model")
        if self.secure_aggregation and (self.evaluate_every or 1) > 1:
            raise ValueError(
                "secure aggregation evaluates every round (its train replies carry no "
                "metrics): no evaluate_every above 1"
            )
        if self.secure_aggregation and self.strategy.name != "fedavg":
            raise ValueError("secure aggregation runs FedAvg: not the strategy named")
        if self.image_network is not None and (
            self.data.image is None or self.kind not in ("image-cnn", "multimodal")
        ):
            raise ValueError("image_network is for image-cnn and multimodal tasks with data.image")
        if problem := _adapter_problem(self):
            raise ValueError(problem)
        if problem := _personal_problem(self):
            raise ValueError(problem)
        if self.kind == "multimodal" and self.data.text is None and self.data.image is None:
            raise ValueError(
                "a multimodal task fuses notes or images: give data.text or data.image"
            )
        return self

    def canonical_json(self) -> bytes:
        """The configuration as canonical JSON (sorted keys, no whitespace); an unset
        image_network, adapter, personalisation or evaluate_every is left out, so tasks
        written before them keep their hash."""
        import orjson

        config = self.model_dump(mode="json")
        for optional in ("image_network", "personal", "ditto_lambda", "evaluate_every"):
            if config[optional] is None:
                del config[optional]
        text, image = config["data"].get("text"), config["data"].get("image")
        if text is not None and text["adapter"] is None:
            del text["adapter"], text["max_tokens"]
        if image is not None:
            for optional in ("adapter", "depth", "window"):
                if image[optional] is None:
                    del image[optional]
        return orjson.dumps(config, option=orjson.OPT_SORT_KEYS)

    @property
    def adapters(self) -> list[AdapterSpec]:
        """The task's LoRA adapters (text, then image): each names pretrained weights."""
        specs = (self.data.text, self.data.image)
        return [s.adapter for s in specs if s is not None and s.adapter is not None]


def _adapter_problem(spec: TaskSpec) -> str | None:
    """Why the task's adapters cannot run as given, or None."""
    data = spec.data
    if not spec.adapters:
        return None
    if spec.kind not in ("text-classifier", "image-cnn", "multimodal"):
        return f"a {spec.kind} task has no pretrained encoder to adapt"
    if data.image is not None and data.image.adapter is not None:
        if spec.image_network in (None, "small-cnn"):
            return "image.adapter fine-tunes a pretrained network: name image_network"
        if spec.kind == "text-classifier":
            return "a text-classifier reads no image: no image.adapter"
    if data.text is not None and data.text.adapter is not None and spec.kind == "image-cnn":
        return "an image-cnn reads no notes: no text.adapter"
    if spec.privacy is not None and spec.privacy.level == "record":
        return "record-level DP (DP-SGD) does not train adapters: use site-level DP"
    return None


def _personal_problem(spec: TaskSpec) -> str | None:
    """Why the task's personalisation cannot run as given, or None."""
    if (spec.personal == "ditto") != (spec.ditto_lambda is not None):
        return "ditto_lambda goes with personal: ditto, and ditto needs it (e.g. 0.1)"
    if spec.personal is None:
        return None
    if spec.kind not in PERSONAL_KINDS:
        return f"personal keeps layers of {' or '.join(PERSONAL_KINDS)} models, not {spec.kind}"
    if spec.personal == "fedper" and spec.kind == "tabular-logreg":
        return "personal: fedper keeps the last layer, all a tabular-logreg has: use tabular-mlp"
    if spec.secure_aggregation:
        return "personal keeps a site's own layers: secure aggregation sums whole models"
    if spec.personal == "fedbn" and spec.privacy is not None and spec.privacy.level == "record":
        return "personal: fedbn adds batch norm, which record-level DP (DP-SGD) cannot train"
    if spec.personal == "ditto" and spec.privacy is not None:
        return (
            "personal: ditto trains a site's own model outside the DP mechanism and reports it: "
            "not with differential privacy (use fedper, or no privacy)"
        )
    return None


def _code_of(kind: str) -> bytes:
    from flip.fl.tasks.models import code_modules

    return b"".join(inspect.getsource(m).encode() for m in code_modules(kind))


def task_hash(spec: TaskSpec) -> str:
    """SHA-256 over the task's canonical configuration and the code of its kind.

    A custom task's model code is part of its configuration (`code`), so it is covered too;
    a personalised task's hash covers the code that keeps each site's own part (its logic,
    `flip.fl.personal`, and the ClientApp's use of it, `flip.fl.site_personal`).
    """
    digest = hashlib.sha256()
    digest.update(spec.canonical_json())
    digest.update(b"\0")
    digest.update(_code_of(spec.kind))
    if spec.personal is not None:
        from flip.fl import personal, site_personal

        digest.update(inspect.getsource(personal).encode())
        digest.update(inspect.getsource(site_personal).encode())
    return digest.hexdigest()


def load_raw_splits(store_location: str, spec: TaskSpec) -> tuple[TabularData, TabularData]:
    """The task's dataset from a store (read-only), unscaled, split by the task's seed."""
    from flip.data.cdm.store import open_store
    from flip.data.features.tabular import extract_raw

    store = open_store(store_location, read_only=True)
    try:
        data = extract_raw(store, spec.data)
    finally:
        store.close()
    return data.split(spec.test_fraction, spec.seed, stratify=spec.data.outcome != "regression")


def load_splits(store_location: str, spec: TaskSpec) -> tuple[TabularData, TabularData, Scaling]:
    """The task's train and test splits from a store, scaled, and the scaling used: the
    spec's fixed one, or (federated scaling, a site alone) this site's training rows'."""
    train, test = load_raw_splits(store_location, spec)
    scaling = scaling_over(spec, [train])
    return scaling.apply(train), scaling.apply(test), scaling


def scaling_over(spec: TaskSpec, trains: list[TabularData]) -> Scaling:
    """The spec's fixed scaling, or (federated) the one the sites of `trains` would agree on."""
    from flip.fl.preprocessing import feature_stats, scaling_of

    if spec.data.scaling == "fixed":
        return Scaling.of_spec(spec.data)
    names = [f.name for f in spec.data.features]
    return scaling_of([feature_stats(train, len(names)) for train in trains], names)
