"""Dynamic micro-batching: concurrent requests scored in one vectorised call.

Requests for one model version queue in its ``MicroBatcher``. One drain task takes
what is queued (up to ``max_batch`` rows) and hands it to the version's own thread,
off the event loop, which makes one Arrow table of it and scores it; each caller gets
its own rows back (as a slice of that table) with their scores. While a
batch is being scored the next one gathers, so batches grow with the load by
themselves. A lone request is never held back: the batcher waits (at most
``max_wait_ms``) for more only while other requests are known to be on their way.

When a batch fails, its requests are retried one by one, so one bad request fails
alone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa

from loopml.serve.inputs import Rows, as_table

Item: TypeAlias = pa.Table | Rows


class MicroBatcher:
    """Queue requests' tables and score them in batches.

    Args:
        score: table -> scores (one row, or one row of a 2-D array, per input row).
        name: the thread's name (the model version it scores).
        max_batch: the most rows per call; a larger request is scored alone.
        max_wait_ms: how long to wait for requests that are on their way.
        arriving: how many requests are admitted but not yet queued (0 when unknown).
        on_batch: called with (rows, requests, seconds) after each scored batch.
    """

    def __init__(
        self,
        score: Callable[[pa.Table], Any],
        *,
        name: str,
        max_batch: int = 256,
        max_wait_ms: float = 2.0,
        arriving: Callable[[], int] = lambda: 0,
        on_batch: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self._score = score
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._arriving = arriving
        self._on_batch = on_batch
        self._queue: deque[tuple[Item, asyncio.Future[Any]]] = deque()
        self._queued_event: asyncio.Event | None = None
        self._drain: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"predict-{name}")
        self.batches = 0
        self.closed = False

    async def submit(self, table: Item) -> tuple[pa.Table, Any]:
        """Score ``table`` (in a batch with others): its rows as a table, and their scores.

        Raises:
            RuntimeError: the batcher is closed.
            Exception: whatever scoring this request alone raised.
        """
        if self.closed:
            raise RuntimeError("the batcher is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((table, future))
        if self._queued_event is not None:
            self._queued_event.set()
        if self._drain is None or self._drain.done():
            self._drain = loop.create_task(self._run())
        return await future

    def score_now(self, table: Item) -> Any:
        """Score ``table`` on the caller's thread (warm-up, checks), bypassing the queue."""
        return self._score(as_table(table))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            # Let requests whose handlers are ready to run queue up first (no waiting).
            await asyncio.sleep(0)
            await self._gather(loop)
            batch = self._take()
            if batch:
                await self._score_batch(loop, batch)

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait up to ``max_wait`` for requests that are on their way, while there is room."""
        if self.max_wait <= 0:
            return
        deadline = loop.time() + self.max_wait
        while self._rows() < self.max_batch and self._arriving() > 0:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._queued_event = asyncio.Event()
            try:
                await asyncio.wait_for(self._queued_event.wait(), remaining)
            except TimeoutError:
                return
            finally:
                self._queued_event = None

    def _rows(self) -> int:
        return sum(table.num_rows for table, _ in self._queue)

    def _take(self) -> list[tuple[Item, asyncio.Future[Any]]]:
        batch: list[tuple[Item, asyncio.Future[Any]]] = []
        rows = 0
        while self._queue:
            table, future = self._queue[0]
            if batch and rows + table.num_rows > self.max_batch:
                break
            self._queue.popleft()
            if future.cancelled():
                continue
            batch.append((table, future))
            rows += table.num_rows
        return batch

    async def _score_batch(
        self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Item, asyncio.Future[Any]]]
    ) -> None:
        items = [item for item, _ in batch]
        started = loop.time()
        try:
            table, scores = await loop.run_in_executor(self._executor, self._score_items, items)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exception=exc)
                return
            # One request's rows may have failed the batch: score each alone.
            for item, future in batch:
                try:
                    alone = await loop.run_in_executor(self._executor, self._score_items, [item])
                except Exception as single:
                    _settle(future, exception=single)
                else:
                    _settle(future, result=alone)
            return
        self.batches += 1
        if self._on_batch is not None:
            self._on_batch(table.num_rows, len(batch), loop.time() - started)
        offset = 0
        for item, future in batch:
            rows = item.num_rows
            _settle(future, result=(table.slice(offset, rows), scores[offset : offset + rows]))
            offset += rows

    def _score_items(self, items: list[Item]) -> tuple[pa.Table, Any]:
        table = as_table(items)
        scores = np.asarray(self._score(table))
        if len(scores) != table.num_rows:
            raise RuntimeError(f"the model gave {len(scores)} scores for {table.num_rows} rows")
        return table, scores

    async def close(self) -> None:
        """Finish what is queued, then stop the scoring thread."""
        self.closed = True
        if self._drain is not None and not self._drain.done():
            await asyncio.shield(self._drain)
        self._executor.shutdown(wait=False)


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, exception: BaseException | None = None
) -> None:
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
