"""Bounded, ordered parallelism for the work of the layers.

zstd compression and decompression release the GIL, and LSZ1 frames are independent,
so frames can be worked on by a small shared thread pool while the calling thread
reads, encrypts and writes in order (``ordered_map``). Sealing holds the GIL, so it
gets one worker, one batch ahead of the calling thread (``overlapped_map``). Either
way few items are in flight, so memory is bounded by the window, never by the file
size. On a one-core machine there are no workers and everything runs in the calling
thread.
"""

from __future__ import annotations

import _thread
import itertools
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from layered_storage import conf

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pools: dict[int, Pool] = {}


def _forget_pools_after_fork() -> None:
    """Start the child of a fork with no pools and a fresh lock.

    ``os.fork()`` copies the pools but not their threads (multiprocessing's fork
    start method, Celery's prefork pool, gunicorn ``--preload``): work submitted to
    a copied pool would wait forever. The lock may have been held by another thread
    of the parent at the fork, so it is replaced, not released.
    """
    global _lock, _pools
    _lock = threading.Lock()
    _pools = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_after_fork)


def available_cores() -> int:
    """Return how many cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_count() -> int:
    """Return the configured number of workers (``LAYERED_STORAGE["WORKERS"]``).

    ``None`` (the default) means one per core, at most four, and none on one core.
    """
    configured = conf.get_setting("WORKERS")
    if configured is None:
        cores = available_cores()
        return 0 if cores < 2 else min(cores, 4)
    return int(configured)


def shared_pool(workers: int) -> Pool:
    """Return the process-wide pool with ``workers`` threads."""
    with _lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = Pool(workers)
            _pools[workers] = pool
        return pool


class Pool:
    """``workers`` threads that run what is submitted, in order, started at once.

    Like ``ThreadPoolExecutor`` with its threads started when the pool is made,
    without waiting for them: ``Thread.start()`` waits a millisecond or two until
    the new thread runs, which the first read of a process would spend idle (the
    calling thread computes what no worker has started meanwhile). The threads are
    daemons: a process exits without waiting for them.
    """

    def __init__(self, workers: int) -> None:
        self._queue: queue.SimpleQueue[
            tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]
        ] = queue.SimpleQueue()
        for number in range(workers):
            _thread.start_new_thread(_serve, (self._queue, f"layered-storage_{number}"))

    def submit(self, function: Callable[..., R], *args: Any) -> Future[R]:
        future: Future[R] = Future()
        self._queue.put((future, function, args))
        return future


def _serve(
    work: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]],
    name: str,
) -> None:
    """Run the pool's work as it comes (the body of each pool thread)."""
    threading.current_thread().name = name
    while True:
        future, function, args = work.get()
        if future.set_running_or_notify_cancel():
            try:
                result = function(*args)
            except BaseException as exc:
                future.set_exception(exc)
                exc = None  # type: ignore[assignment]  # no cycle through the frame
            else:
                future.set_result(result)
                result = None
        future = function = args = None  # type: ignore[assignment]


def ordered_map(
    function: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,
    steal: bool = True,
) -> Iterator[R]:
    """Yield ``function(item)`` for each item, in order, computing ahead in parallel.

    ``workers`` threads compute, the calling thread among them when it may
    ``steal`` (then ``workers - 1`` come from the pool). Items are drawn from
    ``items`` in the calling thread, at most ``2 * workers`` ahead of what was
    yielded; a finished result is yielded as soon as it is next in
    order, so the first one is not held back until the window fills, and a single
    item is run in the calling thread. Unless ``steal`` is False, the calling
    thread computes too instead of waiting: a result that is due but that no
    worker has started (the pool is shared, and may be busy with other files), or
    while a worker computes it, the next one no worker has started. An exception in
    any call is raised when its result is due; the calls still queued behind it are
    cancelled. ``workers`` of None is ``worker_count()``, looked up only when there
    is more than one item.
    """
    if workers is not None and (workers - 1 if steal else workers) <= 0:
        yield from map(function, items)
        return
    head, rest = _split(items)
    if rest is None:  # a single item (a small file): no hand-off to a thread
        yield from map(function, head)
        return
    if workers is None:
        workers = worker_count()
    threads = workers - 1 if steal else workers
    if threads <= 0:
        yield from map(function, itertools.chain(head, rest))
        return
    pool = shared_pool(threads)
    window = 2 * workers
    pending: deque[Task[T, R]] = deque(
        Task(pool, function, item, steal) for item in head
    )
    try:
        for item in rest:
            pending.append(Task(pool, function, item, steal))
            while pending and (len(pending) >= window or pending[0].done()):
                yield _next_result(pending)
        while pending:
            yield _next_result(pending)
    finally:
        for task in pending:
            task.cancel()


class Task(Generic[T, R]):
    """``function(item)`` submitted to ``pool``: a worker runs it, or (if ``steal``)
    the calling thread does when it gets there first (``run_here``, ``result``)."""

    __slots__ = ("_function", "_future", "_item", "_outcome", "_steal")

    def __init__(
        self,
        pool: Pool,
        function: Callable[[T], R],
        item: T,
        steal: bool = True,
    ) -> None:
        self._function = function
        self._steal = steal
        # What the pool's queue holds: emptied by the worker when it starts, or
        # here when this thread takes the item or cancels it, so that a cancelled
        # entry waiting in the queue keeps neither the item nor the function (a
        # failed reader and its seek table) alive. Not the task itself: a failure
        # kept by the future would then keep the task in a cycle.
        self._item: list[Any] = [function, item]
        #: ``(True, result)`` or ``(False, exception)`` once computed here.
        self._outcome: tuple[bool, Any] | None = None
        self._future: Future[R] = pool.submit(_run, self._item)

    def done(self) -> bool:
        return self._outcome is not None or self._future.done()

    def run_here(self) -> bool:
        """Compute the result in this thread if no worker has started it; return
        whether this thread did (its failure is kept for ``result``)."""
        # An empty slot: a worker took the item, or this thread already did.
        if not (self._steal and self._item and self._future.cancel()):
            return False
        item = self._item[1]
        self._item.clear()
        try:
            self._outcome = (True, self._function(item))
        except BaseException as exc:
            self._outcome = (False, exc)
        finally:
            self = item = None  # type: ignore[assignment]  # see result()
        return True

    def result(self) -> R:
        """Return the result, computing it here if no worker has started it."""
        outcome = None
        try:
            if self._outcome is None and not self.run_here():
                return self._future.result()
            outcome, self._outcome = self._outcome, None
            assert outcome is not None, "internal error: no outcome"
            if outcome[0]:
                result: R = outcome[1]
                return result
            raise outcome[1]
        finally:
            # A failure's traceback holds this frame, and the future (or outcome)
            # holds the failure: without this, they form a cycle that keeps
            # whatever the task refers to until the garbage collector runs.
            self = outcome = None  # type: ignore[assignment]

    def cancel(self) -> None:
        self._outcome = None
        if self._future.cancel():
            self._item.clear()


def _next_result(pending: deque[Task[T, R]]) -> R:
    """Return the result of the first task, removing it; while a worker computes
    it, compute the next task that no worker has started, rather than wait."""
    head = task = pending[0]
    try:
        if not head.done() and not head.run_here():
            for task in itertools.islice(pending, 1, None):
                if task.run_here():
                    break
        return pending.popleft().result()
    finally:
        head = task = None  # type: ignore[assignment]  # no cycle (see Task)


def _run(slot: list[Any]) -> Any:
    """Run the function in ``slot`` on the item in it (in a worker), emptying it."""
    function, item = slot
    slot.clear()
    return function(item)


def overlapped_map(
    function: Callable[[T], R], items: Iterable[T], *, workers: int | None = None
) -> Iterator[R]:
    """Yield ``function(item)`` for each item, in order, one item ahead in a worker.

    For work that holds the GIL (cryptography's AEADs seal with it held), where
    more workers would only queue for it: the next item is drawn and handed to a
    single worker just before each result is yielded, so the worker computes while
    the caller handles that result (writing it, mostly without the GIL), and the
    caller draws the next item while the worker is idle instead of waiting for the
    GIL behind it. The worker is shared by every file being saved, so an item it
    has not started when its result is due is computed by the caller instead.
    ``workers`` of 0 computes in the calling thread; a single item always does.
    ``workers`` of None is ``worker_count()``, looked up only for a second item.
    """
    if workers is not None and workers <= 0:
        yield from map(function, items)
        return
    head, rest = _split(items)
    if rest is None:  # a single item (a small file): no hand-off to a thread
        yield from map(function, head)
        return
    if workers is None and worker_count() <= 0:
        yield from map(function, itertools.chain(head, rest))
        return
    pool = shared_pool(1)
    pending: deque[Task[T, R]] = deque(Task(pool, function, item) for item in head)
    try:
        yield pending.popleft().result()
        for item in rest:  # drawn once the caller is done with the last result
            pending.append(Task(pool, function, item))
            yield pending.popleft().result()
        yield pending.popleft().result()
    finally:
        for task in pending:
            task.cancel()


def _split(items: Iterable[T]) -> tuple[list[T], Iterator[T] | None]:
    """Return the first two items and an iterator over the rest, or the items and
    None when there are fewer than two."""
    iterator = iter(items)
    head = list(itertools.islice(iterator, 2))
    return (head, iterator) if len(head) == 2 else (head, None)
