"""Wall time of ``maskcls report`` on a finished run (the README's speed claim), in one process.

    python benchmarks/report_speed.py --run runs/utk_lite0_96 --gradcam 48 --repeat 2

Prints the time of each repeat (the first includes imports and reading the training folder from a cold disk
cache) and the report's photo count; ``--profile`` adds the ten most expensive functions.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--gradcam", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    from maskcls.analysis.report import evaluation_report

    print(
        f"imports: {time.perf_counter() - started:.1f} s  ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})"
    )
    for repeat in range(args.repeat):
        with tempfile.TemporaryDirectory() as out:
            profiler = cProfile.Profile() if args.profile else None
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            result = evaluation_report(args.run, Path(out) / "report", gradcam=args.gradcam, progress=False)
            if profiler:
                profiler.disable()
            seconds = time.perf_counter() - started
            size = (Path(out) / "report" / "index.html").stat().st_size
        print(
            f"repeat {repeat}: {seconds:.1f} s for {result['photos']} photos, "
            f"{result['gradcam_overlays']} Grad-CAM overlays, page {size / 2**20:.1f} MiB "
            f"(load {os.getloadavg()[0]:.1f})"
        )
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
