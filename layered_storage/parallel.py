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

import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from layered_storage import conf

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


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


def shared_pool(workers: int) -> ThreadPoolExecutor:
    """Return the process-wide pool with ``workers`` threads."""
    with _lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(workers, thread_name_prefix="layered-storage")
            _pools[workers] = pool
        return pool


def ordered_map(
    function: Callable[[T], R], items: Iterable[T], *, workers: int
) -> Iterator[R]:
    """Yield ``function(item)`` for each item, in order, computing ahead in parallel.

    Items are drawn from ``items`` in the calling thread, at most ``2 * workers``
    ahead of what was yielded; a finished result is yielded as soon as it is next in
    order, so the first one is not held back until the window fills, and a single
    item is run in the calling thread. An exception in any call is raised when its
    result is due; the calls still queued behind it are cancelled.
    """
    if workers <= 0:
        yield from map(function, items)
        return
    head, rest = _split(items)
    if rest is None:  # a single item (a small file): no hand-off to a thread
        yield from map(function, head)
        return
    pool = shared_pool(workers)
    window = 2 * workers
    pending: deque[Future[R]] = deque(pool.submit(function, item) for item in head)
    try:
        for item in rest:
            pending.append(pool.submit(function, item))
            while pending and (len(pending) >= window or pending[0].done()):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def overlapped_map(
    function: Callable[[T], R], items: Iterable[T], *, workers: int
) -> Iterator[R]:
    """Yield ``function(item)`` for each item, in order, one item ahead in a worker.

    For work that holds the GIL (cryptography's AEADs seal with it held), where
    more workers would only queue for it: the next item is drawn and handed to a
    single worker just before each result is yielded, so the worker computes while
    the caller handles that result (writing it, mostly without the GIL), and the
    caller draws the next item while the worker is idle instead of waiting for the
    GIL behind it. ``workers`` of 0 computes in the calling thread; a single item
    always does.
    """
    if workers <= 0:
        yield from map(function, items)
        return
    head, rest = _split(items)
    if rest is None:  # a single item (a small file): no hand-off to a thread
        yield from map(function, head)
        return
    pool = shared_pool(1)
    pending: deque[Future[R]] = deque(pool.submit(function, item) for item in head)
    try:
        yield pending.popleft().result()
        for item in rest:  # drawn once the caller is done with the last result
            pending.append(pool.submit(function, item))
            yield pending.popleft().result()
        yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def _split(items: Iterable[T]) -> tuple[list[T], Iterator[T] | None]:
    """Return the first two items and an iterator over the rest, or the items and
    None when there are fewer than two."""
    iterator = iter(items)
    head = list(itertools.islice(iterator, 2))
    return (head, iterator) if len(head) == 2 else (head, None)
