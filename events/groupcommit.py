"""Group commit for webhook ingestion.

Each request thread hands its event to one writer thread per process and waits. The writer takes
everything that queued up while the previous commit was in flight and stores it in one transaction,
then answers every waiting request after that commit. Under load many requests share one commit
(one WAL flush instead of many); when idle a batch is a single event and nothing waits for company.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)

#: write_batch(items, on_committed) stores items in one transaction and calls on_committed(results)
#: right after the commit, before any slower after-commit work such as enqueueing processing.
_STOP = object()

WriteBatch = Callable[[Sequence[object], Callable[[list[object]], None]], list[object]]


class Doorbell:
    """Work to enqueue, held by the writer thread for up to `window` seconds and rung as one task.

    At a steady trickle every commit is a batch of one, and one processing task per event costs the
    task queue more than the processing itself; held briefly, several commits share one task. Holding
    risks nothing: the rows are committed, and were this process to die holding them, the sweeper
    rings for them (DESIGN.md: the queue is only the doorbell).
    """

    def __init__(
        self, ring: Callable[[list[object]], None], window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ring, self.window, self._clock = ring, window, clock
        self._held: list[object] = []
        self._since = 0.0

    def hold(self, items: Sequence[object]) -> None:
        if self.window <= 0:
            self._ring(list(items))
            return
        if not self._held:
            self._since = self._clock()
        self._held.extend(items)

    def wait(self) -> float | None:
        """Seconds until the held work is due (None: nothing held)."""
        return max(0.0, self._since + self.window - self._clock()) if self._held else None

    def ring_if_due(self, *, now: bool = False) -> None:
        if self._held and (now or self.wait() == 0.0):
            items, self._held = self._held, []
            try:
                self._ring(items)
            except Exception:  # the sweeper rings for them; the writer must go on
                logger.exception("enqueueing processing of %d events failed; the sweeper will", len(items))


class GroupCommitWriter:
    def __init__(self, write_batch: WriteBatch, *, max_batch: int, doorbell: Doorbell | None = None) -> None:
        self._write_batch = write_batch
        self._max_batch = max_batch
        self.doorbell = doorbell
        self._queue: queue.SimpleQueue[tuple[object, Future]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, item: object, *, timeout: float) -> object:
        """Store `item` with others; return its result once committed (raises what the write raised)."""
        future: Future = Future()
        self._ensure_thread()
        self._queue.put((item, future))
        return future.result(timeout=timeout)

    def _ensure_thread(self) -> None:
        # A forked worker (gunicorn) inherits the object but not the thread: start its own.
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._queue = queue.SimpleQueue()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="webhook-group-commit", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is queued, close the writer's database connection and end its thread."""
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        self._queue.put((_STOP, Future()))
        thread.join(timeout)

    def _take_batch(self) -> list[tuple[object, Future]]:
        while True:  # ring held work when it comes due, even when no request arrives
            wait = self.doorbell.wait() if self.doorbell else None
            try:
                batch = [self._queue.get(timeout=wait)]
                break
            except queue.Empty:
                self.doorbell.ring_if_due()
        while len(batch) < self._max_batch and batch[-1][0] is not _STOP:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = self._take_batch()
            stopping = batch[-1][0] is _STOP
            live = [(item, f) for item, f in batch if item is not _STOP and f.set_running_or_notify_cancel()]
            if live:
                self._write(live)
            if self.doorbell:
                self.doorbell.ring_if_due(now=stopping)
        connection.close()

    def _write(self, batch: list[tuple[object, Future]]) -> None:
        futures = [future for _, future in batch]
        try:
            results = self._write_batch([item for item, _ in batch], lambda res: _resolve(futures, res))
        except Exception:
            logger.exception("group commit of %d events failed; storing them one by one", len(batch))
            self._recover_connection()
            self._write_each(batch)
            return
        _resolve(futures, results)

    def _write_each(self, batch: list[tuple[object, Future]]) -> None:
        """Isolate a bad row: each event alone, so one failure fails only its own request."""
        for item, future in batch:
            try:
                results = self._write_batch([item], lambda res, f=future: _resolve([f], res))
                _resolve([future], results)
            except Exception as exc:
                self._recover_connection()
                if not future.done():
                    future.set_exception(exc)

    @staticmethod
    def _recover_connection() -> None:
        if connection.in_atomic_block:
            return
        close_old_connections()
        if connection.connection is not None and not connection.is_usable():
            connection.close()


def _resolve(futures: list[Future], results: list[object]) -> None:
    for future, result in zip(futures, results, strict=True):
        if not future.done():
            future.set_result(result)
