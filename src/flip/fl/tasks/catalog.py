"""Ready-made task specifications."""

from __future__ import annotations

from typing import Literal

from flip.data.features.image import ImageSpec
from flip.data.features.tabular import Feature, TabularSpec
from flip.data.features.text import TextSpec
from flip.fl.tasks.base import TaskSpec

SYSTOLIC_BP = 3004249
MYOCARDIAL_INFARCTION = 4329847
CEREBRAL_INFARCTION = 443454

#: (name, source, concept ids, centre, scale): clinical reference values, not data
#: statistics; a task with fixed scaling scales by them.
_MACE_FEATURES = [
    ("age", "age", [], 60.0, 10.0),
    ("male", "male", [], 0.5, 0.5),
    ("smoker", "observation", [4298794], 0.5, 0.5),
    ("diabetes", "condition", [201826], 0.5, 0.5),
    ("hypertension", "condition", [320128], 0.5, 0.5),
    ("systolic_bp", "measurement", [SYSTOLIC_BP], 130.0, 20.0),
    ("diastolic_bp", "measurement", [3012888], 80.0, 12.0),
    ("total_cholesterol", "measurement", [3019900], 5.2, 1.0),
    ("hdl_cholesterol", "measurement", [3007070], 50.0, 15.0),
    ("bmi", "measurement", [3038553], 27.0, 5.0),
    ("hba1c", "measurement", [3004410], 5.8, 1.0),
    ("creatinine", "measurement", [3020564], 80.0, 20.0),
    ("sodium", "measurement", [3019550], 140.0, 3.0),
    ("potassium", "measurement", [3023103], 4.3, 0.5),
    ("haemoglobin", "measurement", [3000963], 13.8, 1.5),
    ("alt", "measurement", [3006923], 25.0, 12.0),
    ("albumin", "measurement", [3024561], 42.0, 4.0),
    ("platelets", "measurement", [3024929], 260.0, 60.0),
    ("wbc", "measurement", [3000905], 7.0, 2.0),
    ("bilirubin", "measurement", [3006140], 10.0, 5.0),
]


def mace_task(seed: int = 0, scaling: Literal["fixed", "federated"] = "federated") -> TaskSpec:
    """5-year risk of MI or ischaemic stroke from the first blood-pressure reading, its
    features standardised over every site's training rows (or by reference values)."""
    return TaskSpec(
        name="5-year major adverse cardiovascular events (MI or ischaemic stroke)",
        seed=seed,
        data=TabularSpec(
            scaling=scaling,
            entry_concept_ids=[SYSTOLIC_BP],
            outcome_concept_ids=[MYOCARDIAL_INFARCTION, CEREBRAL_INFARCTION],
            horizon_days=1825,
            features=[
                Feature(name=n, source=s, concept_ids=c, center=m, scale=d)
                for n, s, c, m, d in _MACE_FEATURES
            ],
        ),
    )


#: SGD step for tasks with a CNN: 0.2 (right for the logistic models) makes it diverge.
IMAGE_LEARNING_RATE = 0.01


def mace_modal_task(
    kind: str = "multimodal", seed: int = 0, *, notes: bool = True, images: bool = True
) -> TaskSpec:
    """The MACE task with each patient's clinic letters and/or chest radiograph before entry.

    `kind` is `multimodal` (late fusion of features, notes and image),
    `text-classifier` (notes alone), `image-cnn` (image alone), or a tabular kind
    (every column side by side).
    """
    base = mace_task(seed).model_dump()
    base["data"]["text"] = TextSpec().model_dump() if notes else None
    base["data"]["image"] = ImageSpec().model_dump() if images else None
    if images:
        base["learning_rate"] = IMAGE_LEARNING_RATE
    extra = " and ".join(m for m, on in (("clinic letters", notes), ("radiograph", images)) if on)
    return TaskSpec.model_validate(base | {"kind": kind, "name": f"{base['name']}, with {extra}"})


#: Radiology: cerebral infarction on a non-contrast head CT (flip synth radiology), read in
#: the stroke window (level 40, width 40 HU): grey matter near mid-grey, an early infarct's
#: hypodensity near black. The brain window (0 to 80 HU) halves that contrast, and the 3D
#: network then stays at chance within the demo's rounds.
STROKE_WINDOW_HU = (20.0, 60.0)
#: SGD step for the batch-normalised 3D DenseNet.
VOLUME_LEARNING_RATE = 0.1
#: Small batches, many local epochs: a site has a few dozen scans and a round must take
#: enough steps on them (a step of densenet-small at 16 x 32 x 32 costs ~0.04 s on a CPU).
VOLUME_BATCH_SIZE, VOLUME_LOCAL_EPOCHS = 8, 10


def head_ct_infarct_task(seed: int = 0, network: str = "densenet-small") -> TaskSpec:
    """Cerebral infarction diagnosed within 30 days of arrival (first systolic blood pressure)
    from the head CT of that day, read as a 16 x 32 x 32 volume in the stroke window."""
    return TaskSpec(
        kind="image-cnn",
        name="Cerebral infarction from the arrival head CT",
        seed=seed,
        learning_rate=VOLUME_LEARNING_RATE,
        local_epochs=VOLUME_LOCAL_EPOCHS,
        batch_size=VOLUME_BATCH_SIZE,
        image_network=network,
        data=TabularSpec(
            entry_concept_ids=[SYSTOLIC_BP],
            outcome_concept_ids=[CEREBRAL_INFARCTION],
            horizon_days=30,
            features=[
                Feature(name="age", source="age", center=70.0, scale=15.0),
                Feature(name="male", source="male", center=0.5, scale=0.5),
            ],
            image=ImageSpec(size=32, depth=16, window=STROKE_WINDOW_HU, lookback_days=1),
        ),
    )


#: Built-in tasks by the name `flip site train --task` takes.
BUILT_IN = {
    "mace-5y": lambda seed: mace_task(seed),
    "mace-5y-notes": lambda seed: mace_modal_task("text-classifier", seed, images=False),
    "mace-5y-xray": lambda seed: mace_modal_task("image-cnn", seed, notes=False),
    "mace-5y-multimodal": lambda seed: mace_modal_task("multimodal", seed),
    "head-ct-infarct": lambda seed: head_ct_infarct_task(seed),
}
