"""Working over many stored files: their names as a stream, shards of them, and an
operation run on several at once, in memory that does not grow with their number.

``Storage.listdir`` returns a folder's whole contents at once, and S3Storage's
pages through every key of a folder before returning: a bucket of millions of
objects would be held in memory. ``walk`` yields names as the inner storage lists
them instead: S3 keys a page (1,000) at a time with no delimiter, folders on disk
through ``os.scandir``, and any other storage through ``listdir``, one folder at a
time. The temporary files of unfinished writes are never listed. ``in_shard``
splits a run over machines by a stable hash of each name, and ``run_each`` keeps a
bounded number of files in flight on a thread pool.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.core.files.storage import FileSystemStorage, Storage

from layered_storage.backends.base import Backend, is_partial
from layered_storage.exceptions import ConfigurationError, LayeredStorageError
from layered_storage.storage import LayeredStorage

R = TypeVar("R")


def walk(storage: LayeredStorage, prefix: str = "") -> Iterator[str]:
    """Yield the name of every file whose name starts with ``prefix``.

    ``prefix`` is a name prefix, not only a folder: ``"scans/2024"`` matches
    ``scans/2024/a.pdf`` and ``scans/2024-old.pdf``. The order is the inner
    storage's (lexicographic on S3); nothing is sorted, so nothing is held.
    """
    inner = storage.inner
    if _is_s3(inner):
        yield from _walk_s3(inner, prefix)
    elif isinstance(inner, FileSystemStorage):
        yield from _walk_folders(prefix, _scan_disk(inner))
    else:
        yield from _walk_folders(prefix, _scan_listdir(storage.backend))


def _is_s3(inner: Storage) -> bool:
    # By class name, so that django-storages stays an optional dependency.
    return any(
        f"{cls.__module__}.{cls.__qualname__}" == "storages.backends.s3.S3Storage"
        for cls in type(inner).__mro__
    )


def _walk_s3(inner: Storage, prefix: str) -> Iterator[str]:
    base = str(getattr(inner, "location", "") or "").strip("/")
    start = f"{base}/" if base else ""
    client = inner.connection.meta.client  # type: ignore[attr-defined]
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=inner.bucket_name,  # type: ignore[attr-defined]
        Prefix=start + prefix.lstrip("/"),
    )
    for page in pages:
        for entry in page.get("Contents", ()):
            key: str = entry["Key"]
            if key.endswith("/") or is_partial(posixpath.basename(key)):
                continue  # a folder marker, or an unfinished write
            yield key[len(start) :]


#: ``scan(folder)`` yields ``(entry name, is a folder)`` for one folder.
Scan = Callable[[str], Iterator[tuple[str, bool]]]


def _walk_folders(prefix: str, scan: Scan) -> Iterator[str]:
    """Yield the files below the folders that can hold names starting with
    ``prefix``, each folder listed by ``scan``, depth first."""
    prefix = prefix.lstrip("/")
    folders = [posixpath.dirname(prefix)]
    while folders:
        folder = folders.pop()
        for entry, is_folder in scan(folder):
            name = f"{folder}/{entry}" if folder else entry
            if is_folder:
                # Only folders that may hold a match: inside the prefix, or on it.
                if (name + "/").startswith(prefix) or prefix.startswith(name + "/"):
                    folders.append(name)
            elif name.startswith(prefix) and not is_partial(entry):
                yield name


def _scan_disk(inner: FileSystemStorage) -> Scan:
    """List folders of a FileSystemStorage with ``os.scandir`` (no list built)."""

    def scan(folder: str) -> Iterator[tuple[str, bool]]:
        try:
            entries = os.scandir(inner.path(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        with entries:
            for entry in entries:
                # As FileSystemStorage.listdir does: a link to a folder is a folder.
                yield entry.name, entry.is_dir()

    return scan


def _scan_listdir(inner: Backend) -> Scan:
    """List folders of any storage through its backend's ``listdir``."""

    def scan(folder: str) -> Iterator[tuple[str, bool]]:
        try:
            folders, files = inner.listdir(folder)
        except FileNotFoundError:
            return
        for sub in folders:
            yield sub, True
        for file in files:
            yield file, False

    return scan


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` (0 <= index < count) of a run split over machines."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"A shard is I/N with 0 <= I < N, got {self.index}/{self.count}."
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Return the shard ``"I/N"`` names.

        Raises:
            ValueError: not two integers ``I/N`` with ``0 <= I < N``.
        """
        index, slash, count = text.partition("/")
        if not slash or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"A shard is I/N, e.g. 0/4, got {text!r}.")
        return cls(int(index), int(count))


def in_shard(name: str, shard: Shard | None) -> bool:
    """Return whether ``name`` belongs to ``shard`` (every name to exactly one).

    The first 8 bytes of SHA-256 over the UTF-8 name, as a big-endian integer,
    modulo the shard count: stable across runs, machines and Python versions.
    """
    if shard is None or shard.count == 1:
        return True
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shard.count == shard.index


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """What one operation did with one file: its ``value``, or the ``error`` that
    stopped it there (a file that fails to decode, or vanished meanwhile)."""

    name: str
    value: R | None = None
    error: Exception | None = None


def run_each(
    names: Iterable[str],
    operation: Callable[[str], R],
    *,
    jobs: int = 1,
    storage: LayeredStorage | None = None,
) -> Iterator[Outcome[R]]:
    """Run ``operation`` on each name, ``jobs`` at a time; yield each outcome as it
    finishes (in listing order only with one job).

    Names are drawn from ``names`` as threads free up, at most ``2 * jobs`` ahead,
    so a streamed listing is never held whole. A file that fails to decode or
    vanished meanwhile is an ``Outcome`` with an error and the run goes on; any
    other error (configuration, network, disk) stops the run: files not started
    are not started, those running finish, then it is raised. The threads share
    the connection of ``storage`` (the storage ``operation`` works on), if any.
    """
    if jobs <= 1:
        for name in names:
            yield _attempt(operation, name)
        return
    pool = ThreadPoolExecutor(
        jobs,
        thread_name_prefix="layered-maintenance",
        initializer=_connection_sharer(storage),
    )
    pending: set[Future[Outcome[R]]] = set()
    try:
        for name in names:
            pending.add(pool.submit(_attempt, operation, name))
            if len(pending) >= 2 * jobs:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _connection_sharer(storage: LayeredStorage | None) -> Callable[[], None] | None:
    """Return a thread initializer that gives each thread a connection to the S3
    inner storage of ``storage`` shared with other threads (None: nothing to share).

    S3Storage makes a boto3 session and resource per thread, which takes more CPU
    than a small object's whole verification: 16 new threads spent more on that
    than a serial run on 500 files. A client is thread-safe (and S3Storage already
    shares its ``bucket`` between threads), but it keeps at most
    ``max_pool_connections`` HTTP connections: so threads share a connection by as
    many (this one's first, then one made by the first thread of each group).
    """
    inner: Any = storage.inner if storage is not None else None
    local = getattr(inner, "_connections", None)
    if inner is None or not _is_s3(inner) or local is None:
        return None
    # S3Storage's own, made in this thread if need be; this thread lists with it.
    connections = [inner.connection]
    config = connections[0].meta.client.meta.config
    per_connection = max(int(getattr(config, "max_pool_connections", 10) or 10), 1)
    lock = threading.Lock()
    users = 1

    def share() -> None:
        nonlocal users
        with lock:
            group = users // per_connection
            users += 1
            if group == len(connections):
                connections.append(inner.connection)  # made here, as S3Storage does
            local.connection = connections[group]

    return share


def _attempt(operation: Callable[[str], R], name: str) -> Outcome[R]:
    try:
        return Outcome(name, operation(name))
    except ConfigurationError:
        raise  # the same for every file: stop
    except (LayeredStorageError, FileNotFoundError) as exc:
        return Outcome(name, error=exc)
