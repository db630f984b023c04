"""Micro-batching: photos from concurrent requests share one forward pass.

A request puts its decoded photo in a bounded queue and awaits its own result. One loop takes the
first photo waiting, gathers whatever else arrives within ``max_wait`` (up to ``max_batch``), runs the
model once on the stack in a worker thread (the event loop keeps accepting requests meanwhile) and
hands each request its row. It waits only while other requests are on their way (``incoming``: read
and decoding), so a lone request is never delayed. Photos that arrive during a forward pass wait for
the next one, so under load batches grow by themselves. When ``queue_size`` photos already wait, ``submit`` raises
``QueueFull`` at once (the service answers 503 with Retry-After) instead of letting memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

Outputs = dict[str, np.ndarray]


class QueueFull(Exception):
    """Too many photos are waiting; try again shortly."""


class MicroBatcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], Outputs],
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        queue_size: int = 256,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self.on_batch = on_batch or (lambda size: None)
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._incoming = 0

    async def start(self) -> None:
        self._queue = asyncio.Queue(self.queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maskcls-inference")
        self._task = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._queue is not None and not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the service is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    @contextlib.contextmanager
    def incoming(self):
        """Around reading and decoding a request: a photo is on its way, worth waiting for."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1

    async def submit(self, photo: np.ndarray) -> Outputs:
        """The model's outputs for one photo ``(H, W, 3)`` uint8, computed in a shared batch."""
        if self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running")
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((photo, future))
        except asyncio.QueueFull:
            raise QueueFull(f"{self.queue_size} photos are already waiting") from None
        return await future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(items) < self.max_batch:
                if not self._queue.empty():
                    items.append(self._queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0 or not self._incoming:
                    break
                try:
                    items.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            items = [(photo, future) for photo, future in items if not future.done()]  # callers that gave up
            if items:
                await self._run_batch(loop, items)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, items: list) -> None:
        try:
            outputs = await loop.run_in_executor(self._executor, self.predict, np.stack([photo for photo, _ in items]))
        except Exception as err:  # the model failed: every waiting request learns it, the loop lives on
            for _, future in items:
                if not future.done():
                    future.set_exception(err)
            return
        self.on_batch(len(items))
        for row, (_, future) in enumerate(items):
            if not future.done():
                future.set_result({name: values[row] for name, values in outputs.items()})
