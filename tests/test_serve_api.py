"""The HTTP API through httpx: predictions, every kind of bad input, a full queue, a failing model, the batcher."""

import asyncio
import io
import os
import struct
import subprocess
import sys
import time
import zlib

import httpx
import numpy as np
import pytest
from conftest import NO_TORCH
from fastapi.testclient import TestClient
from PIL import Image

from maskcls.data.images import read_resized
from maskcls.export.runtime import OnnxModel
from maskcls.serve.app import create_app
from maskcls.serve.batching import MicroBatcher, QueueFull
from maskcls.serve.settings import ServeSettings

LIMIT_MB = 1.0


@pytest.fixture(scope="module")
def onnx_model(tiny_onnx):
    return OnnxModel(tiny_onnx)


@pytest.fixture(scope="module")
def client(tiny_onnx, onnx_model):
    settings = ServeSettings(onnx=tiny_onnx, max_upload_mb=LIMIT_MB, max_wait_ms=2, max_files=4)
    with TestClient(create_app(settings, (onnx_model, "onnxruntime"))) as client:
        yield client


@pytest.fixture(scope="module")
def photo(demo_dir):
    return sorted((demo_dir / "eval" / "images").iterdir())[0]


def _image_bytes(fmt: str, size=(40, 30), **options) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels in 70 bytes: decoding it would take gigabytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _assert_clean_error(response, status: int, words: str):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
    assert words in body["detail"], body["detail"]
    assert "Traceback" not in response.text and 'File "' not in response.text


def test_predict_multipart_and_raw_body_answer_the_model(client, onnx_model, photo):
    data = photo.read_bytes()
    answer = client.post("/predict", files={"file": (photo.name, data, "image/jpeg")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = onnx_model.predict(read_resized(photo, onnx_model.metadata.cache_hw)[None])
    assert np.allclose(body["probabilities"], expected["probs"][0], atol=1e-6)
    assert body["class"] == int(expected["probs"][0].argmax())
    assert body["class_name"] == onnx_model.metadata.labels.class_names[body["class"]]
    assert body["class_name"] == f"{body['mask']}/{body['gender']}/{body['age_group']}"
    assert body["model_id"] == onnx_model.metadata.model_id and body["latency_ms"] > 0
    for head, names in (
        ("mask", ["wear", "incorrect", "not_wear"]),
        ("gender", ["male", "female"]),
        ("age", ["<30", "30-59", ">=60"]),
    ):
        assert list(body["heads"][head]) == names
        assert sum(body["heads"][head].values()) == pytest.approx(1, abs=1e-5)
        assert np.allclose(list(body["heads"][head].values()), expected[head][0], atol=1e-6)
    # The class is the argmax of the 18 joint probabilities (the heads are marginals): the answer shows how.
    top = body["top_classes"]
    assert len(top) == 3 and top[0]["class"] == body["class"] and top[0]["probability"] == body["probability"]
    assert [t["probability"] for t in top] == sorted(body["probabilities"], reverse=True)[:3]
    assert all(t["class_name"] == onnx_model.metadata.labels.class_names[t["class"]] for t in top)
    assert "most probable of the 18 joint classes" in body["class_rule"] and "marginal" in body["class_rule"]
    raw = client.post("/predict", content=data, headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 200 and raw.json()["probabilities"] == body["probabilities"]


def test_batch_endpoint_answers_each_photo_on_its_own(client, photo):
    files = [
        ("files", ("a.jpg", photo.read_bytes(), "image/jpeg")),
        ("files", ("b.jpg", b"not a photo", "image/jpeg")),
        ("files", ("c.png", _image_bytes("PNG"), "image/png")),
    ]
    answer = client.post("/predict/batch", files=files)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["filename"] for r in results] == ["a.jpg", "b.jpg", "c.png"]
    assert [r["status"] for r in results] == [200, 415, 200]
    assert results[0]["prediction"]["class"] == client.post("/predict", content=photo.read_bytes()).json()["class"]
    assert "not an image" in results[1]["error"] and results[1]["prediction"] is None
    too_many = client.post(
        "/predict/batch", files=[("files", (f"{i}.png", _image_bytes("PNG"), "image/png")) for i in range(5)]
    )
    assert too_many.status_code == 400 and "Too many files" in too_many.json()["detail"]


BAD_INPUTS = {
    "over the size limit (raw)": (
        dict(content=b"\xff\xd8\xff" + b"0" * int(1.5 * 2**20), headers={"Content-Type": "image/jpeg"}),
        413,
        "over the limit of 1.0 MB",
    ),
    "over the size limit (form)": (
        dict(files={"file": ("big.jpg", b"\xff\xd8\xff" + b"0" * int(1.5 * 2**20), "image/jpeg")}),
        413,
        "over the limit",
    ),
    "not an image": (
        dict(files={"file": ("notes.jpg", b"these are my notes, not a photo", "image/jpeg")}),
        415,
        "not an image file",
    ),
    "not an image content type": (
        dict(content=b'{"photo": 1}', headers={"Content-Type": "application/json"}),
        415,
        "unsupported content type 'application/json'",
    ),
    "unsupported image type": (
        dict(files={"file": ("anim.gif", _image_bytes("GIF"), "image/gif")}),
        415,
        "unsupported image type GIF",
    ),
    "truncated JPEG": (
        dict(files={"file": ("cut.jpg", _image_bytes("JPEG", (64, 64))[:400], "image/jpeg")}),
        422,
        "truncated",
    ),
    "corrupt PNG": (
        dict(files={"file": ("bad.png", _image_bytes("PNG")[:60] + b"garbage" * 20, "image/png")}),
        422,
        "corrupt",
    ),
    "decompression bomb": (
        dict(files={"file": ("bomb.png", _png_header_only(8000, 6000), "image/png")}),
        413,
        "decompression bomb refused: 8000x6000",
    ),
    "giant decompression bomb": (
        dict(content=_png_header_only(100_000, 100_000), headers={"Content-Type": "image/png"}),
        413,
        "decompression bomb refused",
    ),
    "empty body": (dict(content=b"", headers={"Content-Type": "image/jpeg"}), 422, "the request body is empty"),
    "empty file": (dict(files={"file": ("empty.jpg", b"", "image/jpeg")}), 422, "empty file"),
    "form without a file": (dict(data={"note": "hello"}, files={}), 422, "the form holds no file"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_its_status_and_a_clear_json_message(client, case):
    request, status, words = BAD_INPUTS[case]
    if request.get("files") == {}:  # httpx sends a urlencoded body then; make it a real multipart form without files
        request = dict(
            content=b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--b--\r\n',
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
    _assert_clean_error(client.post("/predict", **request), status, words)
    assert client.get("/health").json()["model_loaded"] is True  # the server lives on


def test_bomb_is_refused_before_decoding(client):
    started = time.perf_counter()
    _assert_clean_error(
        client.post("/predict", content=_png_header_only(30_000, 30_000), headers={"Content-Type": "image/png"}),
        413,
        "bomb",
    )
    assert time.perf_counter() - started < 5  # decoding 900 million pixels would take far longer (and 2.7 GB)


def test_pages_docs_health_and_metrics(client, onnx_model):
    page = client.get("/")
    assert page.status_code == 200 and 'type="file"' in page.text and "/static/app.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from outside
    script = client.get("/static/app.js")
    assert script.status_code == 200 and 'fetch("/predict"' in script.text and "https://" not in script.text
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"multipart/form-data", "image/jpeg"} <= set(spec["paths"]["/predict"]["post"]["requestBody"]["content"])
    assert {"413", "415", "422", "503"} <= set(spec["paths"]["/predict"]["post"]["responses"])
    health = client.get("/health").json()
    assert (
        health["model_loaded"]
        and health["model_id"] == onnx_model.metadata.model_id
        and health["engine"] == "onnxruntime"
    )
    assert health["folds"] == [0, 1, 2]
    _assert_clean_error(client.get("/nowhere"), 404, "Not Found")
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("maskcls_http_requests_total", "maskcls_http_request_seconds_bucket", "maskcls_batch_size_bucket"):
        assert name in metrics.text
    assert 'maskcls_http_requests_total{method="GET",route="/health",status="200"}' in metrics.text
    assert 'maskcls_http_requests_total{method="GET",route="unmatched",status="404"}' in metrics.text
    assert 'maskcls_http_requests_total{method="GET",route="/static",status="200"}' in metrics.text
    assert 'route="unmatched",status="200"' not in metrics.text  # the page's files are labelled by their mount


class _SlowModel:
    """The real model, slowed down, or failing on real photos (the warm-up pass of zeros still works)."""

    def __init__(self, model, delay=0.0, fail=False):
        self.model, self.delay, self.fail = model, delay, fail
        self.metadata, self.source = model.metadata, model.source

    def predict(self, pixels):
        if self.fail and pixels.any():
            raise RuntimeError("simulated failure deep inside the model")
        time.sleep(self.delay)
        return self.model.predict(pixels)


async def _concurrently(app, requests: int, photo: bytes):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(
                *(
                    client.post("/predict", content=photo, headers={"Content-Type": "image/jpeg"})
                    for _ in range(requests)
                )
            )


def test_full_queue_answers_503_with_retry_after(tiny_onnx, onnx_model, photo):
    settings = ServeSettings(onnx=tiny_onnx, max_batch=1, queue_size=1, max_wait_ms=0)
    app = create_app(settings, (_SlowModel(onnx_model, delay=0.3), "onnxruntime"))
    responses = asyncio.run(_concurrently(app, 6, photo.read_bytes()))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses and set(statuses) <= {200, 503}, statuses
    busy = next(r for r in responses if r.status_code == 503)
    _assert_clean_error(busy, 503, "busy")
    assert busy.headers["retry-after"] == "1"


def test_a_failing_model_gives_500_without_a_traceback_and_the_server_lives_on(tiny_onnx, onnx_model, photo):
    settings = ServeSettings(onnx=tiny_onnx)
    with TestClient(
        create_app(settings, (_SlowModel(onnx_model, fail=True), "onnxruntime")), raise_server_exceptions=False
    ) as client:
        broken = client.post("/predict", content=photo.read_bytes(), headers={"Content-Type": "image/jpeg"})
        _assert_clean_error(broken, 500, "internal error")
        assert "simulated failure" not in broken.text
        assert client.get("/health").status_code == 200


def test_batcher_shares_passes_and_routes_rows_back():
    calls = []

    def predict(batch):
        calls.append(len(batch))
        time.sleep(0.02)
        return {"value": batch.reshape(len(batch), -1)[:, 0].astype(np.int64) * 10}

    async def scenario():
        batcher = MicroBatcher(predict, max_batch=8, max_wait_s=0.01, queue_size=64)
        await batcher.start()
        try:
            photos = [np.full((2, 2, 3), i, np.uint8) for i in range(20)]
            return await asyncio.gather(*(batcher.submit(p) for p in photos))
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    assert [int(r["value"]) for r in results] == [10 * i for i in range(20)]
    assert sum(calls) == 20 and len(calls) < 20 and max(calls) <= 8


def test_batcher_refuses_beyond_its_queue():
    def slow(batch):
        time.sleep(0.2)
        return {"x": batch}

    async def scenario():
        batcher = MicroBatcher(slow, max_batch=1, max_wait_s=0, queue_size=2)
        await batcher.start()
        try:
            photo = np.zeros((1, 1, 3), np.uint8)
            waiting = [asyncio.create_task(batcher.submit(photo))]
            await asyncio.sleep(0.05)  # the first photo is in the forward pass
            waiting += [asyncio.create_task(batcher.submit(photo)) for _ in range(2)]
            await asyncio.sleep(0)  # two more wait in the queue: it is full
            with pytest.raises(QueueFull):
                await batcher.submit(photo)
            assert len(await asyncio.gather(*waiting)) == 3  # the ones that got in are all answered
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_a_run_served_by_pytorch_answers_like_its_export(tiny_run, client, photo):
    with TestClient(create_app(ServeSettings(run=tiny_run))) as torch_client:
        health = torch_client.get("/health").json()
        served = torch_client.post(
            "/predict", content=photo.read_bytes(), headers={"Content-Type": "image/jpeg"}
        ).json()
    exported = client.post("/predict", content=photo.read_bytes(), headers={"Content-Type": "image/jpeg"}).json()
    assert health["engine"] == "pytorch" and health["model_id"] == exported["model_id"]  # same weights, same id
    assert served["class"] == exported["class"]
    assert np.abs(np.array(served["probabilities"]) - exported["probabilities"]).max() < 1e-4


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give either a run (--run DIR) or an ONNX file"),
        (["--onnx", "absent.onnx"], "ONNX model not found: absent.onnx"),
        (["--onnx", "m.onnx", "--max-batch", "0"], "max_batch: Input should be greater than or equal to 1"),
    ],
)
def test_serve_command_refuses_bad_options_before_listening(args, message, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from maskcls.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"")
    result = CliRunner().invoke(app, ["serve", *args], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_batcher_waits_only_for_requests_on_their_way():
    calls = []

    def predict(batch):
        calls.append(len(batch))
        return {"x": batch}

    async def scenario():
        batcher = MicroBatcher(predict, max_batch=8, max_wait_s=30, queue_size=8)
        await batcher.start()
        try:
            photo = np.zeros((1, 1, 3), np.uint8)
            await asyncio.wait_for(batcher.submit(photo), timeout=10)  # alone: not held for the 30 s window
            with batcher.incoming():  # another request is being read and decoded
                first = asyncio.create_task(batcher.submit(photo))
                await asyncio.sleep(0.05)
                second = asyncio.create_task(batcher.submit(photo))
            await asyncio.wait_for(asyncio.gather(first, second), timeout=10)
        finally:
            await batcher.stop()

    asyncio.run(scenario())
    assert calls == [1, 2]


def test_serving_an_onnx_model_never_imports_torch(tiny_onnx, photo):
    code = (
        NO_TORCH
        + f"""
from fastapi.testclient import TestClient
from maskcls.serve.app import create_app
from maskcls.serve.settings import ServeSettings
with TestClient(create_app(ServeSettings(onnx={str(tiny_onnx)!r}))) as client:
    body = open({str(photo)!r}, "rb").read()
    answer = client.post("/predict", content=body, headers={{"Content-Type": "image/jpeg"}})
    assert answer.status_code == 200, answer.text
    assert client.get("/health").json()["engine"] == "onnxruntime"
assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules)
"""
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
