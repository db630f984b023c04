"""The HTTP service under load: requests/s and latency p50 / p95 / p99 at 1, 8 and 32 concurrent clients.

Two `maskcls serve --onnx MODEL` processes (one uvicorn worker each) run side by side, one with
micro-batching (``--max-batch 32 --max-wait-ms 5``) and one without (``--max-batch 1``); the client
(httpx, asyncio, in this process) posts real JPEGs over loopback. Each measurement is cut into short
chunks that alternate between the two servers (which goes first alternates too), so a noisy
neighbour hits both alike. Latency is what the client saw per request; the server's own time
(``latency_ms`` of the answer) is kept beside it. Server and client share this machine's cores, as
a small deployment would.

    python benchmarks/serve_load.py --onnx model.onnx --photos DIR --out benchmarks/results/serve_cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from maskcls.core.io import write_json

SERVERS = {
    "batching (max 32, wait 5 ms)": ["--max-batch", "32", "--max-wait-ms", "5"],
    "no batching": ["--max-batch", "1"],
}


def start(model: Path, port: int, options: list[str], threads: int, log: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "maskcls",
        "serve",
        "--onnx",
        str(model),
        "--port",
        str(port),
        "--threads",
        str(threads),
        *options,
    ]
    log_file = open(log, "w")  # noqa: SIM115 (the child process writes into it until it stops)
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit(f"server on port {port} did not start; see {log}")


async def load(
    base_url: str, photos: list[bytes], clients: int, requests: int
) -> tuple[list[float], float, list[int], list[float]]:
    """Latencies (ms) of ``requests`` posts made by ``clients`` concurrent clients, the wall time, the statuses, the
    server's times."""
    latencies, statuses, server_ms = [], [], []
    counter = iter(range(requests))
    async with httpx.AsyncClient(
        base_url=base_url, timeout=120, limits=httpx.Limits(max_connections=clients)
    ) as client:

        async def worker():
            for index in counter:
                tick = time.perf_counter()
                response = await client.post(
                    "/predict", files={"file": ("photo.jpg", photos[index % len(photos)], "image/jpeg")}
                )
                latencies.append((time.perf_counter() - tick) * 1000)
                statuses.append(response.status_code)
                if response.status_code == 200:
                    server_ms.append(response.json()["latency_ms"])

        tick = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, time.perf_counter() - tick, statuses, server_ms


def batch_stats(base_url: str) -> tuple[float, float]:
    text = httpx.get(base_url + "/metrics").text
    values = {
        name: float(value) for name, value in re.findall(r"^(maskcls_batch_size_(?:sum|count)) (\S+)$", text, re.M)
    }
    return values.get("maskcls_batch_size_sum", 0.0), values.get("maskcls_batch_size_count", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True, help="A folder of JPEGs to post (searched recursively).")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=48, help="Requests per chunk (at least twice the clients).")
    parser.add_argument("--chunks", type=int, default=8, help="Alternating chunks per server and client count.")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="onnxruntime threads per server.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_cpu.json"))
    args = parser.parse_args()

    photos = [p.read_bytes() for p in sorted(args.photos.rglob("*.jpg"))[:64]]
    logs = Path(tempfile.mkdtemp(prefix="maskcls-serve-bench-"))
    servers, urls = {}, {}
    try:
        for index, (name, options) in enumerate(SERVERS.items()):
            port = 18700 + index
            servers[name] = start(args.onnx, port, options, args.threads, logs / f"server{index}.log")
            urls[name] = f"http://127.0.0.1:{port}"
        for url in urls.values():  # warm-up
            asyncio.run(load(url, photos, 8, 64))
        results = {
            (name, clients): {
                "latencies": [],
                "server_ms": [],
                "seconds": 0.0,
                "requests": 0,
                "statuses": [],
                "batch": [0.0, 0.0],
            }
            for name in SERVERS
            for clients in args.clients
        }
        for clients in args.clients:
            requests = max(args.requests, 2 * clients)
            for chunk in range(args.chunks):
                for name in list(urls) if chunk % 2 == 0 else list(urls)[::-1]:
                    url = urls[name]
                    before = batch_stats(url)
                    latencies, seconds, statuses, server_ms = asyncio.run(load(url, photos, clients, requests))
                    after = batch_stats(url)
                    entry = results[(name, clients)]
                    entry["latencies"] += latencies
                    entry["server_ms"] += server_ms
                    entry["seconds"] += seconds
                    entry["requests"] += len(latencies)
                    entry["statuses"] += statuses
                    entry["batch"] = [
                        entry["batch"][0] + after[0] - before[0],
                        entry["batch"][1] + after[1] - before[1],
                    ]
            for name in urls:
                entry = results[(name, clients)]
                print(f"{name}, {clients} clients: {entry['requests'] / entry['seconds']:.1f} req/s")
    finally:
        for process in servers.values():
            process.terminate()
            process.wait(timeout=30)

    rows = []
    for (name, clients), entry in results.items():
        latencies = np.asarray(entry["latencies"])
        rows.append(
            {
                "server": name,
                "clients": clients,
                "requests": entry["requests"],
                "requests_per_s": entry["requests"] / entry["seconds"],
                "p50_ms": float(np.percentile(latencies, 50)),
                "p95_ms": float(np.percentile(latencies, 95)),
                "p99_ms": float(np.percentile(latencies, 99)),
                "server_p50_ms": float(np.percentile(entry["server_ms"], 50)),
                "server_p99_ms": float(np.percentile(entry["server_ms"], 99)),
                "mean_batch": entry["batch"][0] / max(entry["batch"][1], 1),
                "errors": sum(s != 200 for s in entry["statuses"]),
            }
        )
    by_key = {(r["server"], r["clients"]): r for r in rows}
    batching, plain = SERVERS
    ratios = {
        f"{clients} clients: requests/s with / without batching": by_key[(batching, clients)]["requests_per_s"]
        / by_key[(plain, clients)]["requests_per_s"]
        for clients in args.clients
    }
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "threads": args.threads,
        "chunks": args.chunks,
        "requests_per_chunk": args.requests,
        "photos": len(photos),
        "photo_bytes_mean": float(np.mean([len(p) for p in photos])),
        "rows": rows,
        "ratios": ratios,
    }
    write_json(args.out, report)
    print(
        "\n| server | clients | requests/s | p50 ms | p95 ms | p99 ms | server p50 / p99 ms | photos per forward pass "
        "| errors |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for row in sorted(rows, key=lambda r: (r["clients"], r["server"])):
        print(
            f"| {row['server']} | {row['clients']} | {row['requests_per_s']:.1f} | {row['p50_ms']:.1f} | "
            f"{row['p95_ms']:.1f} | {row['p99_ms']:.1f} | {row['server_p50_ms']:.1f} / {row['server_p99_ms']:.1f} | "
            f"{row['mean_batch']:.1f} | {row['errors']} |"
        )
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")


if __name__ == "__main__":
    main()
