"""ONNX Runtime against PyTorch on this machine: same exported run, same decoded photos, one process.

Both engines run the same graph (``export.graph.PredictionGraph``: preprocessing, network, softmax),
PyTorch in eager mode under ``inference_mode`` (what ``maskcls serve --run`` does), ONNX Runtime on
the file ``maskcls export`` wrote. Batch 1: latency p50 / p95 over single photos; batch 64: photos/s.
Rounds alternate between the engines so a noisy neighbour hits both alike. Also measured: the
exporter's graph optimisation (``optimize=True`` vs ``False``: node count and speed) and onnxruntime's
own graph optimisation level, to decide what "simplify" buys.

    python benchmarks/onnx_vs_torch.py --run RUN --photos DIR --out benchmarks/results/onnx_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from maskcls.core.io import write_json
from maskcls.data.images import read_resized
from maskcls.export.graph import build_graph
from maskcls.export.onnx_export import export_onnx, write_graph


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def session(path: Path, threads: int, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = level
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="A trained run to export (one or more folds).")
    parser.add_argument(
        "--photos", type=Path, required=True, help="A folder of JPEG / PNG photos (searched recursively)."
    )
    parser.add_argument("--count", type=int, default=256, help="Photos to use.")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="Threads for both engines.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating measurement rounds per engine.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/onnx_cpu.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="maskcls-onnx-bench-"))
    started = time.perf_counter()
    model_path = export_onnx(args.run, workdir / "model.onnx", progress=False)[0]
    export_seconds = time.perf_counter() - started
    graph, metadata = build_graph(args.run)
    paths = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.count]
    pixels = np.stack([read_resized(p, metadata.cache_hw) for p in paths])
    print(
        f"{len(paths)} photos at {metadata.cache_hw}, model {metadata.architecture} ({metadata.head}), "
        f"{len(metadata.folds)} fold(s), TTA {metadata.tta.name}, {args.threads} threads; "
        f"export took {export_seconds:.1f} s"
    )

    unoptimized_path = workdir / "model_unoptimized.onnx"
    write_graph(graph, unoptimized_path, {}, optimize=False)
    engines = {
        "pytorch (eager, inference_mode)": lambda x: graph(torch.from_numpy(x)),
        "onnxruntime": _runner(session(model_path, args.threads)),
        "onnxruntime, exporter optimize=False": _runner(session(unoptimized_path, args.threads)),
        "onnxruntime, ORT graph optimisations off": _runner(
            session(model_path, args.threads, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        ),
    }
    latencies = {name: [] for name in engines}
    throughput = {name: [] for name in engines}
    with torch.inference_mode():
        for run in engines.values():  # warm-up: first passes allocate
            run(pixels[:1])
            run(pixels[:64])
        for round_index in range(args.rounds):
            for name, run in engines.items():
                for row in range(len(pixels)):
                    tick = time.perf_counter()
                    run(pixels[row : row + 1])
                    latencies[name].append((time.perf_counter() - tick) * 1000)
                tick = time.perf_counter()
                for start in range(0, len(pixels), 64):
                    run(pixels[start : start + 64])
                throughput[name].append(len(pixels) / (time.perf_counter() - tick))
            print(f"round {round_index + 1}/{args.rounds} done")

    rows = []
    for name in engines:
        rows.append(
            {
                "engine": name,
                "batch1_p50_ms": percentile(latencies[name], 50),
                "batch1_p95_ms": percentile(latencies[name], 95),
                "batch64_photos_per_s": statistics.median(throughput[name]),
            }
        )
    baseline = rows[0]
    ratios = {
        f"{row['engine']} / pytorch": {
            "batch1_p50_speedup": baseline["batch1_p50_ms"] / row["batch1_p50_ms"],
            "batch64_throughput_ratio": row["batch64_photos_per_s"] / baseline["batch64_photos_per_s"],
        }
        for row in rows[1:]
    }
    nodes = {
        "optimize=True": len(onnx.load(str(model_path)).graph.node),
        "optimize=False": len(onnx.load(str(unoptimized_path)).graph.node),
    }
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "threads": args.threads,
        "model": {
            "architecture": metadata.architecture,
            "head": metadata.head,
            "folds": list(metadata.folds),
            "tta": metadata.tta.name,
            "input": list(metadata.preprocess.image_size),
            "cache": list(metadata.cache_hw),
        },
        "photos": len(paths),
        "rounds": args.rounds,
        "export_seconds": export_seconds,
        "graph_nodes": nodes,
        "results": rows,
        "ratios": ratios,
    }
    write_json(args.out, report)
    print("\n| engine | batch 1 p50 ms | batch 1 p95 ms | batch 64 photos/s |\n|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['engine']} | {row['batch1_p50_ms']:.2f} | {row['batch1_p95_ms']:.2f} | "
            f"{row['batch64_photos_per_s']:.1f} |"
        )
    print(json.dumps({"ratios": ratios, "graph_nodes": nodes}, indent=2))


def _runner(sess: ort.InferenceSession):
    return lambda x: sess.run(["probs"], {"pixels": x})


if __name__ == "__main__":
    main()
