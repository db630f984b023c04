"""Training-step speed with the first stages fixed (``model.freeze_stages``), against none fixed, one process.

The step is the model's own: ``create_model`` + ``freeze_stages`` + ``build_optimizer`` (fused AdamW on the
CPU), channels_last, random photos already in memory, so the ratio is the model step's alone (the data path
is the same for every setting). Rounds alternate between the settings so a noisy neighbour hits all alike.

    python benchmarks/freeze_speed.py --model tf_efficientnet_lite0 --size 128 --stages 0 1 3 4 \\
        --out benchmarks/results/freeze_speed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from maskcls.core.config import OptimConfig, load_config
from maskcls.models.factory import create_model
from maskcls.models.freeze import freeze_stages
from maskcls.training.optim import build_optimizer


def make_step(model_name: str, stages: int, images: torch.Tensor, labels: torch.Tensor):
    model = create_model(load_config(None, [f"model.name={model_name}", "model.pretrained=none"]).model).train()
    freeze_stages(model.backbone, stages)
    optimizer = build_optimizer(model, OptimConfig(name="adamw"))

    def step():
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--stages",
        type=int,
        nargs="+",
        default=[0, 1, 3, 4],
        help="settings of model.freeze_stages; the first is the baseline",
    )
    parser.add_argument("--steps", type=int, default=4, help="timed steps per setting and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 18, (args.batch,))
    steps = {n: make_step(args.model, n, images, labels) for n in args.stages}
    for step in steps.values():
        step()  # warm-up: allocations, oneDNN kernels
    seconds = {n: [] for n in args.stages}
    for _ in range(args.rounds):
        for n, step in steps.items():
            started = time.perf_counter()
            for _ in range(args.steps):
                step()
            seconds[n].append((time.perf_counter() - started) / args.steps)

    baseline = statistics.median(seconds[args.stages[0]])
    rows = []
    print(
        f"{args.model} at {args.size} px, batch {args.batch}, {torch.get_num_threads()} threads, "
        f"{args.rounds} rounds x {args.steps} steps"
    )
    print("| model.freeze_stages | photos/s | s / step | ratio to the baseline |\n|---|---|---|---|")
    for n in args.stages:
        median = statistics.median(seconds[n])
        rows.append(
            {
                "freeze_stages": n,
                "photos_per_s": args.batch / median,
                "seconds_per_step": median,
                "ratio": baseline / median,
            }
        )
        print(f"| {n} | {args.batch / median:.1f} | {median:.3f} | {baseline / median:.2f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "model": args.model,
                    "size": args.size,
                    "batch": args.batch,
                    "threads": torch.get_num_threads(),
                    "machine": platform.processor() or platform.machine(),
                    "torch": torch.__version__,
                    "rows": rows,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
