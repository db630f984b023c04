"""``maskcls export``: a run's fold models as ONNX, merged into one graph or one file per fold.

The graph (``graph.PredictionGraph``) takes uint8 photos at the cache size with a dynamic batch axis and
carries preprocessing, TTA, the fold models and their averaging; the metadata (``metadata``) carries
everything else a runtime needs. Exported with PyTorch's dynamo exporter (the TorchScript one has no
antialiased resize, which the ``zoom_out`` view uses), optimised by onnxscript's optimizer (constant
folding, dead nodes: see BENCHMARKS.md), and checked with ``onnx.checker`` after writing.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..core.io import atomic_path
from ..core.progress import track
from .graph import PredictionGraph, build_graph, load_trained_run
from .metadata import INPUT_NAME, METADATA_KEY, OUTPUT_NAMES

OPSET = 20  # Resize with antialias needs >= 18; onnxruntime >= 1.18 runs 20


def export_onnx(
    run_dir: str | Path,
    out: str | Path,
    folds: list[int] | None = None,
    separate: bool = False,
    tta: str | None = None,
    opset: int = OPSET,
    optimize: bool = True,
    progress: bool = True,
) -> list[Path]:
    """Write ``out`` (all or the given ``folds`` merged into one graph that averages their probabilities).

    ``separate`` writes one file per fold instead, ``<out stem>.fold<K>.onnx``. Returns the files written.
    """
    import onnx  # noqa: F401  (a missing extra is reported before minutes of work: pip install maskcls[onnx])

    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"--out {out}: name the model file *.onnx")
    run = load_trained_run(run_dir)
    chosen = list(run.folds) if folds is None else list(folds)
    groups = [[fold] for fold in chosen] if separate else [chosen]
    written = []
    for group in track(groups, f"exporting {len(groups)} ONNX file(s)", len(groups), progress):
        target = out.with_name(f"{out.stem}.fold{group[0]}.onnx") if separate else out
        graph, metadata = build_graph(run, group, tta)
        metadata = metadata.model_copy(update={"opset": opset})
        write_graph(graph, target, {METADATA_KEY: metadata.to_json()}, opset, optimize)
        written.append(target)
    return written


def write_graph(
    graph: PredictionGraph, target: Path, metadata_props: dict[str, str], opset: int = OPSET, optimize: bool = True
) -> Path:
    """Export ``graph`` (uint8 ``pixels`` with a dynamic batch axis) to ``target`` atomically and check it."""
    import onnx

    example = torch.zeros((2, *graph.cache_hw, 3), dtype=torch.uint8)  # batch 2: sizes 0 and 1 would be specialised
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export's notes on internal ops; failures still raise
        program = torch.onnx.export(
            graph.eval(),
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"pixels": {0: torch.export.Dim("batch")}},
            opset_version=opset,
            optimize=optimize,
            verbose=False,
        )
    program.model.metadata_props.update(metadata_props)
    with atomic_path(target) as tmp:
        program.save(str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    return target
