"""Predict with an exported model using onnxruntime and numpy only: this module never imports torch.

Photos are framed and decoded by the same torch-free code as training and ``predict --run``
(``data.framing`` through the decode-once cache, at the cache size and framing the model's metadata names); everything
after decoding is inside the graph. So ``predict --onnx`` writes the same ``test_probs.csv`` and
``submission.csv`` as ``predict --run`` (within float rounding), on a machine without PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.artifacts import PREDICT_SKIPPED_FILE
from ..core.metrics import disagreement
from ..core.progress import track
from ..core.tables import PROB_COLUMNS
from ..data.cache import build_cache, default_cache_root
from ..data.images import ImageLimits
from ..data.layout import DataError, read_eval, skip_hint
from ..ensemble.person_consistency import read_groups
from ..inference.outputs import Prediction, argmax_or, file_rows, fill_rows, write_eval_predictions
from .metadata import INPUT_NAME, OUTPUT_NAMES, ExportedModelError, ExportMetadata, parse_metadata


class OnnxModel:
    """An exported model ready to predict: the onnxruntime session and its checked metadata."""

    def __init__(self, path: str | Path, threads: int = 0):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ExportedModelError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except (
            Exception
        ) as err:  # onnxruntime raises its own exception types for unreadable, invalid or unsupported graphs
            raise ExportedModelError(
                f"{path} is not an ONNX model onnxruntime can load ({type(err).__name__}: {err})"
            ) from None
        self.metadata: ExportMetadata = parse_metadata(self.session.get_modelmeta().custom_metadata_map, str(path))
        self.source = str(path)
        self._check_signature()

    def predict(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's outputs by name for a uint8 batch ``(N, H, W, 3)`` at the cache size."""
        outputs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(pixels, dtype=np.uint8)})
        return dict(zip(OUTPUT_NAMES, outputs, strict=False))

    def _check_signature(self) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        expected = [self.metadata.input.height, self.metadata.input.width, 3]
        pixels = inputs.get(INPUT_NAME)
        if pixels is None or list(pixels.shape[1:]) != expected or not set(OUTPUT_NAMES) <= outputs:
            raise ExportedModelError(
                f"{self.source}: the graph does not match its metadata (input {INPUT_NAME} {expected} and outputs "
                f"{', '.join(OUTPUT_NAMES)} expected); export the run again with `maskcls export`"
            )


def predict_photos(
    model: OnnxModel,
    photos: pd.DataFrame,
    batch_size: int = 64,
    cache_dir: str | None = None,
    limits: ImageLimits = ImageLimits(),
    progress: bool = True,
) -> Prediction:
    """Predictions of ``photos`` (``image_id``, ``path``): the ONNX twin of ``inference.predict.predict_table``."""
    cache = build_cache(
        photos[["image_id", "path"]],
        model.metadata.cache_hw,
        default_cache_root(cache_dir),
        limits,
        progress=progress,
        framing=model.metadata.input.framing,
    )
    problems = cache.problems(photos["path"].tolist())
    bad_paths = {p.file for p in problems}
    good = np.flatnonzero(~photos["path"].isin(bad_paths).to_numpy())
    pixels = cache.array()
    folds = len(model.metadata.folds)
    probs = np.full((len(photos), len(PROB_COLUMNS)), np.nan, dtype=np.float64)
    fold_probs = np.zeros((len(good), folds, len(PROB_COLUMNS)), dtype=np.float32)
    starts = range(0, len(good), batch_size)
    for start in track(starts, f"predicting {len(good)} photos (ONNX)", len(starts), progress):
        rows = good[start : start + batch_size]
        outputs = model.predict(pixels[rows])
        probs[rows] = outputs["probs"]
        fold_probs[start : start + len(rows)] = outputs["fold_probs"]
    columns = {
        "disagreement": fill_rows(len(photos), good, disagreement(fold_probs.transpose(1, 0, 2)) if len(good) else [])
    }
    if cache.faces is not None:  # the run crops faces: 1 = cropped to the face found, 0 = no face, the whole photo
        columns["face_found"] = fill_rows(len(photos), good, cache.face_found()[good].astype(float))
    return Prediction(probs, argmax_or(probs, model.metadata.fallback_class), columns, problems)


def predict_eval_onnx(
    model_path: str | Path,
    eval_dir: str | Path,
    out_dir: str | Path | None = None,
    on_bad_image: str = "fail",
    batch_size: int = 64,
    cache_dir: str | None = None,
    threads: int = 0,
    progress: bool = True,
    persons: str | Path | None = None,
    group_size: int | None = None,
) -> pd.DataFrame:
    """Write ``test_probs.csv`` and ``submission.csv`` for ``eval_dir`` (default ``out_dir``: the model's folder);
    ``persons`` and ``group_size`` as in ``inference.predict.predict_eval``."""
    model = OnnxModel(model_path, threads)
    out_dir = Path(out_dir) if out_dir else Path(model_path).parent
    info, problems = read_eval(eval_dir)
    if problems and on_bad_image == "fail":
        raise DataError(
            f"{len(problems)} problem(s) found in {eval_dir}; nothing was predicted.",
            problems,
            skip_hint(PREDICT_SKIPPED_FILE),
        )
    groups = (
        read_groups(persons, info["image_id"]) if persons is not None else None
    )  # checked before the (long) prediction
    prediction = predict_photos(model, info, batch_size, cache_dir, progress=progress)
    record = {
        "onnx": str(Path(model_path).resolve()),
        "model_id": model.metadata.model_id,
        "tta": model.metadata.tta.name,
        "mc_dropout": 0,
        "persons": str(Path(persons).resolve()) if persons else None,
        "group_size": group_size,
    }
    return write_eval_predictions(
        eval_dir, out_dir, info, prediction, problems, on_bad_image, record, groups, group_size
    )


def predict_files_onnx(
    model_path: str | Path, files: list[str | Path], threads: int = 0, out_dir: str | Path | None = None
) -> pd.DataFrame:
    """One row per photo: class, mask, gender, age group and probability (or the reason it failed); see
    ``file_rows``."""
    model = OnnxModel(model_path, threads)
    photos = pd.DataFrame({"image_id": [str(f) for f in files], "path": [str(f) for f in files]})
    prediction = predict_photos(model, photos, progress=False)
    return file_rows(photos["path"].tolist(), prediction, model.metadata.labels.age_names, out_dir)
