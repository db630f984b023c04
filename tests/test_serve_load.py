"""Load over loopback against a real `maskcls serve` (two uvicorn workers): no 5xx, and requests shared
forward passes."""

import asyncio
import re

import httpx

REQUESTS = 300
CONCURRENT = 32


def _metric(text: str, name: str, labels: str = "") -> float:
    """The sum of the samples of ``name`` whose labels contain ``labels`` (workers and label sets added up)."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if match and labels in (match.group(1) or ""):
            total += float(match.group(2))
    return total


async def _hammer(base_url: str, photos: list[bytes]) -> list[int]:
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT)
    gate = asyncio.Semaphore(CONCURRENT)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:

        async def one(index: int) -> int:
            async with gate:
                response = await client.post(
                    "/predict", files={"file": (f"{index}.jpg", photos[index % len(photos)], "image/jpeg")}
                )
                return response.status_code

        return await asyncio.gather(*(one(i) for i in range(REQUESTS)))


def test_300_requests_32_at_a_time_without_server_errors_and_with_batching(live_server, demo_dir):
    photos = [path.read_bytes() for path in sorted((demo_dir / "eval" / "images").iterdir())[:16]]
    before = httpx.get(live_server + "/metrics").text
    statuses = asyncio.run(_hammer(live_server, photos))
    after = httpx.get(live_server + "/metrics").text
    assert sorted(set(statuses)) == [200], {code: statuses.count(code) for code in set(statuses)}
    photos_predicted = _metric(after, "maskcls_batch_size_sum") - _metric(before, "maskcls_batch_size_sum")
    passes = _metric(after, "maskcls_batch_size_count") - _metric(before, "maskcls_batch_size_count")
    assert photos_predicted == REQUESTS
    assert passes < REQUESTS, f"{REQUESTS} photos took {passes:.0f} forward passes: requests were never batched"
    single = _metric(after, "maskcls_batch_size_bucket", 'le="1.0"') - _metric(
        before, "maskcls_batch_size_bucket", 'le="1.0"'
    )
    assert single < passes, "every forward pass held a single photo"
    answered = _metric(after, "maskcls_http_requests_total", 'route="/predict",status="200"') - _metric(
        before, "maskcls_http_requests_total", 'route="/predict",status="200"'
    )
    assert answered == REQUESTS
