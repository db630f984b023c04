"""`maskcls bench` of two versions of maskcls in one run: the same photos, rounds interleaved (A B A B ...).

Usage: python benchmarks/compare_versions.py REV [--rounds 2] [--persons 200] [bench options, e.g. --model M --size HxW]
REV is checked out into a temporary git worktree; the working tree is the candidate. Each round runs
`python -m maskcls bench` once per version (PYTHONPATH picks the version's src/), and the script prints
each version's median photos/s per measurement and the candidate / baseline ratios with their spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(src: Path, photos: Path, options: list[str], out: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "maskcls", "bench", "--data", str(photos), "--out", str(out), *options]
    subprocess.run(command, check=True, env=env, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def speeds(reports: list[dict]) -> dict[str, float]:
    """Photos/s of every measurement in a bench result (one report per model), keyed by model and name."""
    return {
        f"{report['model']} {entry['name']}": float(entry["images_per_s"])
        for report in reports
        for entry in report["results"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--persons", type=int, default=200)
    args, bench_options = parser.parse_known_args()
    bench_options = [o for o in bench_options if o != "--"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        baseline = tmp / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(baseline), args.rev], check=True, cwd=ROOT)
        try:
            photos = tmp / "photos"
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "maskcls",
                    "demo-data",
                    str(photos),
                    "--persons",
                    str(args.persons),
                    "--eval-persons",
                    "1",
                    "--force",
                ],
                check=True,
                env=env,
                stdout=subprocess.DEVNULL,
            )
            runs: dict[str, list[dict[str, float]]] = {"baseline": [], "candidate": []}
            for round_ in range(args.rounds):
                for name, src in (("baseline", baseline / "src"), ("candidate", ROOT / "src")):
                    result = bench(src, photos / "train", bench_options, tmp / f"{name}_{round_}.json")
                    runs[name].append(speeds(result))
                    print(f"round {round_ + 1} {name}: done", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], check=False, cwd=ROOT)
    keys = sorted(set(runs["baseline"][0]) & set(runs["candidate"][0]))
    print(f"\n{'measurement':40s} {'baseline':>10s} {'candidate':>10s} {'ratio':>7s}  ratios per round")
    for key in keys:
        base = statistics.median(r[key] for r in runs["baseline"])
        cand = statistics.median(r[key] for r in runs["candidate"])
        per_round = [c[key] / b[key] for b, c in zip(runs["baseline"], runs["candidate"], strict=True)]
        print(f"{key:40s} {base:10.1f} {cand:10.1f} {cand / base:7.3f}  {' '.join(f'{r:.3f}' for r in per_round)}")


if __name__ == "__main__":
    main()
