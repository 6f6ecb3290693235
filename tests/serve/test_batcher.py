"""The batcher: requests that come while a batch runs go together into the next; one item's failure
is its own; a batch never exceeds max_batch."""

from __future__ import annotations

import asyncio
import threading

import pytest

from csrseg.serve.batcher import Batcher


class GatedRun:
    """A ``run`` that records its batches and, until ``gate`` is set, holds the first one."""

    def __init__(self, fail: set | None = None) -> None:
        self.batches: list[list] = []
        self.gate = threading.Event()
        self.fail = fail or set()

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            assert self.gate.wait(30), "the test never opened the gate"
        return [ValueError(f"item {i} is bad") if i in self.fail else i * 10 for i in items]


async def _until(condition) -> None:
    for _ in range(30_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


def test_requests_that_come_while_a_batch_runs_go_together_into_the_next():
    async def main():
        run = GatedRun()
        batcher = Batcher(run, max_batch=8, max_wait_ms=0)
        first = asyncio.create_task(batcher.submit(0))
        await _until(lambda: len(run.batches) == 1)  # the worker holds batch [0]
        rest = [asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3)]
        await _until(lambda: batcher.queued == 3)
        run.gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.stop()
        return run, batcher, results

    run, batcher, results = asyncio.run(main())
    assert results == [0, 10, 20, 30]
    assert run.batches == [[0], [1, 2, 3]]
    assert (batcher.stats.batches, batcher.stats.items, batcher.stats.largest) == (2, 4, 3)


def test_a_batch_never_holds_more_than_max_batch():
    async def main():
        run = GatedRun()
        batcher = Batcher(run, max_batch=2, max_wait_ms=0)
        first = asyncio.create_task(batcher.submit(0))
        await _until(lambda: len(run.batches) == 1)
        rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 6)]
        await _until(lambda: batcher.queued == 5)
        run.gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.stop()
        return run, results

    run, results = asyncio.run(main())
    assert results == [0, 10, 20, 30, 40, 50]
    assert [len(b) for b in run.batches] == [1, 2, 2, 1]


def test_one_failing_item_fails_only_its_own_request():
    async def main():
        run = GatedRun(fail={2})
        batcher = Batcher(run, max_batch=8, max_wait_ms=0)
        first = asyncio.create_task(batcher.submit(0))
        await _until(lambda: len(run.batches) == 1)
        rest = [asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3)]
        await _until(lambda: batcher.queued == 3)
        run.gate.set()
        results = await asyncio.gather(first, *rest, return_exceptions=True)
        after = await batcher.submit(4)
        await batcher.stop()
        return run, results, after

    run, results, after = asyncio.run(main())
    assert run.batches[1] == [1, 2, 3]  # the bad item was in a batch with others
    assert results[:2] == [0, 10] and results[3] == 30
    assert isinstance(results[2], ValueError) and "item 2" in str(results[2])
    assert after == 40


def test_a_run_that_raises_fails_its_batch_and_the_next_batch_is_served():
    calls = []

    def run(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("broken batch")
        return items

    async def main():
        batcher = Batcher(run, max_batch=4, max_wait_ms=0)
        with pytest.raises(RuntimeError, match="broken batch"):
            await batcher.submit("a")
        value = await batcher.submit("b")
        await batcher.stop()
        return value

    assert asyncio.run(main()) == "b"


def test_a_lone_request_waits_at_most_max_wait_for_company():
    async def main():
        batcher = Batcher(lambda items: items, max_batch=64, max_wait_ms=5)
        value = await asyncio.wait_for(batcher.submit(7), timeout=30)  # answered without 63 others
        await batcher.stop()
        return value

    assert asyncio.run(main()) == 7


def test_max_batch_below_one_is_refused():
    with pytest.raises(ValueError, match="max_batch 0"):
        Batcher(lambda items: items, max_batch=0)


def test_a_batcher_whose_loop_ended_serves_the_next_loop():
    # a test client without `with` (or a parent app) may run each request on an event loop of its own
    batcher = Batcher(lambda items: [i * 10 for i in items], max_batch=4, max_wait_ms=0)

    async def one(item):
        return await asyncio.wait_for(batcher.submit(item), 10)

    assert asyncio.run(one(1)) == 10
    assert asyncio.run(one(2)) == 20  # hung for ever when the queue was the first loop's
    asyncio.run(batcher.stop())
