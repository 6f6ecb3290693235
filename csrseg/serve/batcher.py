"""Concurrent requests gathered into batches for one model: an asyncio queue on the server's event
loop and one worker thread that runs the batches (:class:`Batcher`).

Why one thread: the predictor is not made to be called from two threads at once, and on a CPU a
second concurrent batch would only split the same cores. Why batches: one network pass over
``max_batch`` images costs less than ``max_batch`` passes (fewer, larger matrix products). A batch is
closed when it holds ``max_batch`` items or ``max_wait_ms`` after its first item came, whichever is
first; while the worker runs one batch, the next one gathers in the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class BatchStats:
    """What the batcher has done: items answered, batches run, the largest batch."""

    items: int = 0
    batches: int = 0
    largest: int = 0


class Batcher(Generic[Item, Result]):
    """``await batcher.submit(item)`` -> ``run([... item ...])``'s result for that item.

    ``run``: items -> one result per item, in order, each a result or the exception to raise for that
    item alone (an exception raised by ``run`` itself fails every item of its batch). It runs in the
    batcher's one worker thread. :meth:`stop` runs on the event loop that submits.
    """

    def __init__(self, run: Callable[[list[Item]], list[Result | Exception]], *, max_batch: int = 8,
                 max_wait_ms: float = 10.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch {max_batch}: must be at least 1")
        self.run = run
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.stats = BatchStats()
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def queued(self) -> int:
        """Items waiting for a batch."""
        return self._queue.qsize() if self._queue is not None else 0

    def start(self) -> None:
        """Start gathering batches on the running event loop (:meth:`submit` does it on first use: an app
        mounted in another one never sees its own lifespan events). A batcher whose loop has ended (a
        test client without ``with`` runs each request on a loop of its own) starts again on this one:
        its queue and gathering task belonged to the loop that is gone."""
        loop = asyncio.get_running_loop()
        if self._queue is not None and self._loop is loop and self._task is not None and not self._task.done():
            return
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._queue, self._loop = asyncio.Queue(), loop
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csrseg-batch")
        self._task = loop.create_task(self._gather())

    async def stop(self) -> None:
        """Stop gathering; items still queued are failed, the batch being run finishes first."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue is not None and not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._queue = self._task = self._executor = self._loop = None

    async def submit(self, item: Item) -> Result:
        """``item``'s result, once its batch has run; raises the exception ``run`` gave for it."""
        self.start()
        assert self._queue is not None
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _next_batch(self) -> list[tuple[Item, asyncio.Future]]:
        """The first item to come, then as many more as come within ``max_wait`` (up to ``max_batch``)."""
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while len(batch) < self.max_batch:
            if not self._queue.empty():  # already waiting: take it without a wait
                batch.append(self._queue.get_nowait())
                continue
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except TimeoutError:
                break
        return batch

    async def _gather(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            live = [(item, future) for item, future in batch if not future.done()]  # a cancelled wait needs no work
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self.run, [item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"a batch of {len(live)} gave {len(results)} results")
            except asyncio.CancelledError:  # stopped while the batch ran: its waiters are not left hanging
                for _, future in live:
                    if not future.done():
                        future.set_exception(RuntimeError("the server is shutting down"))
                raise
            except Exception as exc:  # run itself failed: every item of the batch hears of it
                logger.exception("a batch of %d failed", len(live))
                results = [exc] * len(live)
            self.stats.items += len(live)
            self.stats.batches += 1
            self.stats.largest = max(self.stats.largest, len(live))
            for (_, future), result in zip(live, results):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
