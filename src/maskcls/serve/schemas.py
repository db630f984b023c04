"""Request and response shapes of the HTTP API (they are also its OpenAPI documentation at /docs)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from ..core.labels import decode
from ..export.metadata import LabelSpec


class ErrorBody(BaseModel):
    detail: str = Field(description="What was wrong, in plain words.")


class HeadProbabilities(BaseModel):
    mask: dict[str, float] = Field(description="wear / incorrect / not_wear")
    gender: dict[str, float] = Field(description="male / female")
    age: dict[str, float] = Field(description="the three age groups under the model's thresholds")


TOP_CLASSES = 3
CLASS_RULE = (
    "class = the most probable of the 18 joint classes (probabilities); each head's numbers (heads) are its "
    "marginal, the sum of the joint probabilities over the other two heads, so a head's largest marginal can "
    "differ from the class's part"
)


class ClassProbability(BaseModel):
    class_id: int = Field(serialization_alias="class", ge=0, lt=18, description="One of the 18 joint classes.")
    class_name: str
    probability: float = Field(description="Its joint probability.")


class PhotoPrediction(BaseModel):
    class_id: int = Field(
        serialization_alias="class", ge=0, lt=18, description="class = mask * 6 + gender * 3 + age_group"
    )
    class_name: str
    mask: str
    gender: str
    age_group: str
    probability: float = Field(description="Probability of the predicted class.")
    probabilities: list[float] = Field(description="The 18 class probabilities, in class order.")
    heads: HeadProbabilities = Field(description="Each head's marginal probabilities (sums of the joint ones).")
    top_classes: list[ClassProbability] = Field(
        default_factory=list,
        description=f"The {TOP_CLASSES} most probable joint classes, best first: the first is `class`.",
    )
    class_rule: str = Field(CLASS_RULE, description="How `class` follows from the probabilities.")
    model_id: str
    latency_ms: float = Field(
        description="Server time for this request: reading, decoding, waiting for a batch, predicting."
    )

    @classmethod
    def from_outputs(
        cls, outputs: dict[str, np.ndarray], labels: LabelSpec, model_id: str, latency_ms: float
    ) -> PhotoPrediction:
        probs = outputs["probs"]
        label = int(np.argmax(probs))
        ranked = [label, *[int(i) for i in np.argsort(-probs, kind="stable") if int(i) != label]][:TOP_CLASSES]
        mask, gender, age = decode(label)
        return cls(
            class_id=label,
            class_name=labels.class_names[label],
            mask=labels.mask_names[mask],
            gender=labels.gender_names[gender],
            age_group=labels.age_names[age],
            probability=float(probs[label]),
            probabilities=[float(p) for p in probs],
            heads=HeadProbabilities(
                mask=dict(zip(labels.mask_names, map(float, outputs["mask"]), strict=False)),
                gender=dict(zip(labels.gender_names, map(float, outputs["gender"]), strict=False)),
                age=dict(zip(labels.age_names, map(float, outputs["age"]), strict=False)),
            ),
            top_classes=[
                ClassProbability(class_id=i, class_name=labels.class_names[i], probability=float(probs[i]))
                for i in ranked
            ],
            model_id=model_id,
            latency_ms=round(latency_ms, 3),
        )


class BatchItem(BaseModel):
    filename: str
    prediction: PhotoPrediction | None = None
    status: int = Field(200, description="What this photo alone would have got from POST /predict.")
    error: str | None = None


class BatchPrediction(BaseModel):
    results: list[BatchItem]
    model_id: str
    latency_ms: float


class Health(BaseModel):
    status: str = "ok"
    model_loaded: bool
    model_id: str
    engine: str = Field(description="onnxruntime or pytorch")
    source: str
    architecture: str
    head: str
    folds: list[int]
    tta: str
    input_size: tuple[int, int]
