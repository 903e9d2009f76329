"""Micro-batching: concurrent requests share one call; each caller gets its own rows."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pyarrow as pa
import pytest

from loopml.serve.batching import MicroBatcher


def rows(*values: float) -> pa.Table:
    return pa.table({"x": pa.array(values, pa.float64())})


def doubling(calls: list[int], delay: float = 0.01) -> object:
    def score(table: pa.Table) -> np.ndarray:
        # Scoring runs on the batcher's thread, never on the event loop's.
        assert threading.current_thread() is not threading.main_thread()
        calls.append(table.num_rows)
        values = table.column("x").to_numpy()
        if np.isnan(values).any():
            raise ValueError("a NaN reached the model")
        time.sleep(delay)
        return values * 2

    return score


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows() -> None:
    calls: list[int] = []
    batches: list[tuple[int, int]] = []

    async def main() -> list[tuple[pa.Table, np.ndarray]]:
        batcher = MicroBatcher(
            doubling(calls),
            name="t",
            max_batch=64,
            on_batch=lambda n, requests, seconds: batches.append((n, requests)),
        )
        results = await asyncio.gather(
            *(batcher.submit(rows(float(i), float(i) + 0.5)) for i in range(40))
        )
        await batcher.close()
        return results

    results = asyncio.run(main())
    for i, (table, scores) in enumerate(results):
        assert scores.tolist() == [2.0 * i, 2.0 * i + 1.0]
        assert table.column("x").to_pylist() == [float(i), i + 0.5]  # its own rows
    assert sum(calls) == 80
    # 40 requests at once fit in few calls, each bounded by max_batch rows.
    assert len(calls) < 10 and max(calls) <= 64
    assert max(requests for _, requests in batches) > 1


def test_a_lone_request_does_not_wait_for_max_wait() -> None:
    async def main() -> float:
        batcher = MicroBatcher(lambda t: t.column("x").to_numpy(), name="t", max_wait_ms=500)
        started = time.perf_counter()
        await batcher.submit(rows(1.0))
        elapsed = time.perf_counter() - started
        await batcher.close()
        return elapsed

    assert asyncio.run(main()) < 0.25


def test_requests_on_their_way_are_waited_for_at_most_max_wait() -> None:
    calls: list[int] = []

    async def main() -> None:
        on_the_way = [1]
        batcher = MicroBatcher(
            doubling(calls, 0), name="t", max_wait_ms=50, arriving=lambda: on_the_way[0]
        )
        first = asyncio.ensure_future(batcher.submit(rows(1.0)))
        await asyncio.sleep(0.01)
        on_the_way[0] = 0
        _, second = await batcher.submit(rows(2.0))
        assert (await first)[1].tolist() == [2.0] and second.tolist() == [4.0]
        # Alone and nothing announced: no waiting at all.
        started = time.perf_counter()
        await batcher.submit(rows(3.0))
        assert time.perf_counter() - started < 0.04
        await batcher.close()

    asyncio.run(main())
    assert calls[0] == 2


def test_a_bad_request_fails_alone() -> None:
    calls: list[int] = []

    async def main() -> list[object]:
        batcher = MicroBatcher(doubling(calls), name="t")
        results = await asyncio.gather(
            batcher.submit(rows(1.0)),
            batcher.submit(rows(float("nan"))),
            batcher.submit(rows(3.0)),
            return_exceptions=True,
        )
        await batcher.close()
        return results

    good, bad, other = asyncio.run(main())
    assert isinstance(bad, ValueError)
    assert good[1].tolist() == [2.0] and other[1].tolist() == [6.0]  # type: ignore[index]
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(_submit_closed())


async def _submit_closed() -> None:
    batcher = MicroBatcher(lambda t: t, name="t")
    await batcher.close()
    await batcher.submit(rows(1.0))
