"""Concurrency: forked children, process pools and threads sharing one storage.

The layers hand frames and segments to a process-wide thread pool, so a storage must
keep working in a child forked after that pool started (multiprocessing's fork start
method, Celery's prefork pool, gunicorn ``--preload``), in spawned processes, and
under many threads saving and reading through one instance at once.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import random
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile

from layered_storage import LayeredStorage, parallel
from tests.conftest import inner_config, make_storage
from tests.utils import sample

MIB = 1024 * 1024
#: More than one 1 MiB frame and one batch of segments, so saving and reading it
#: hand work to the shared pool.
POOLED_SIZE = 2 * MIB
#: A save and a read of 2 MiB take well under a second; a child that has not
#: exited by then is stuck.
TIMEOUT = 30.0
#: Python 3.12+ warns when a process with threads forks (the pool's threads are
#: the point here); pytest turns warnings into errors.
FORK_WARNING = "ignore:This process .* is multi-threaded:DeprecationWarning"


@pytest.fixture(autouse=True)
def two_workers(settings: Any) -> None:
    # The default is no workers on one core; the pool is what is being tested.
    settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, "WORKERS": 2}


def exercise(storage: LayeredStorage, name: str, data: bytes) -> str:
    """Save ``data`` as ``name`` and check every way of reading it back; return the
    name used."""
    used = storage.save(name, ContentFile(data))
    check_reads(storage, used, [data])
    return used


def check_reads(storage: LayeredStorage, name: str, candidates: list[bytes]) -> None:
    """Read ``name`` whole, by seeks and by size: all must agree with one of the
    ``candidates`` (several when writers raced for the name).

    Raises:
        AssertionError: any other answer.
    """
    with storage.open(name) as opened:
        data = opened.read()
        assert data in candidates, f"{name}: read back bytes nobody wrote"
        rng = random.Random(name)
        for _ in range(4):
            offset = rng.randrange(len(data) + 1)
            opened.seek(offset)
            got = opened.read(rng.randrange(1, 100_000))
            assert got == data[offset:][: len(got)], f"{name}: read after seek {offset}"
            assert len(got) == min(len(data) - offset, len(got))
        assert opened.seek(0, io.SEEK_END) == len(data)
    assert storage.size(name) == len(data), f"{name}: size"


def wait_for_child(pid: int, timeout: float = TIMEOUT) -> int:
    """Return the exit code of child ``pid``; kill it if it runs past ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child was still running after {timeout:.0f}s: hung")


def run_forked(work: Callable[[], None]) -> int:
    """Run ``work`` in a forked child; return its exit code (0: no exception)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns into pytest
        code = 1
        try:
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return wait_for_child(pid)


@pytest.mark.filterwarnings(FORK_WARNING)
def test_forked_child_saves_and_reads_after_the_parent_used_the_pool(
    settings: Any, tmp_path: Path
) -> None:
    storage = make_storage(settings, tmp_path, "filesystem", ["zstd", "aes-gcm"])
    exercise(storage, "parent.txt", sample(POOLED_SIZE, 1))
    # The pools exist and their threads are running: a fork copies the former only.
    assert parallel._pools, "the parent never started the shared pool"
    data = sample(POOLED_SIZE, 2)

    def child() -> None:
        exercise(storage, "child.txt", data)

    assert run_forked(child) == 0
    assert storage.open("child.txt").read() == data


@pytest.mark.filterwarnings(FORK_WARNING)
def test_forked_child_never_takes_a_frame_its_parents_thread_kept(
    settings: Any, tmp_path: Path
) -> None:
    # A save's head check keeps its file's one frame in the thread for the save to
    # use; one begun (and never read) before a fork leaves that frame in the child.
    storage = make_storage(settings, tmp_path, "filesystem", ["zstd", "aes-gcm"])
    pending = storage.pipeline.encode(
        io.BytesIO(b"kept by the parent's thread\n" * 1500), storage.context("a.txt")
    )
    data = b"the child's own small file\n" * 1500

    def child() -> None:
        exercise(storage, "child.txt", data)

    assert run_forked(child) == 0
    assert storage.open("child.txt").read() == data
    pending.close()


def process_worker(task: tuple[dict[str, Any], list[Any], str, int]) -> str:
    """Save and read one file through the storage described by ``task`` in a pool
    process, forked or spawned; return the name used."""
    import django
    from django.apps import apps

    if not apps.ready:  # a spawned process starts with nothing set up
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
        django.setup()
    from django.conf import settings
    from django.test.utils import override_settings

    config, layers, name, seed = task
    workers = {**settings.LAYERED_STORAGE, "WORKERS": 2}
    storages = {**settings.STORAGES, "shared": config}
    with override_settings(STORAGES=storages, LAYERED_STORAGE=workers):
        storage = LayeredStorage(inner="shared", layers=layers)
        return exercise(storage, name, sample(POOLED_SIZE, seed))


@pytest.mark.filterwarnings(FORK_WARNING)
@pytest.mark.parametrize("kind", ["filesystem", "s3"])
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_process_pool_saves_and_reads_through_one_configured_storage(
    settings: Any, tmp_path: Path, method: str, kind: str
) -> None:
    config = inner_config(kind, tmp_path)
    layers = ["zstd", "aes-gcm"]
    settings.STORAGES = {**settings.STORAGES, "shared": config}
    storage = LayeredStorage(inner="shared", layers=layers)
    exercise(storage, "parent.txt", sample(POOLED_SIZE, 3))  # the pool runs here too
    tasks = [(config, layers, f"proc/{i}.txt", 10 + i) for i in range(4)]
    context = multiprocessing.get_context(method)
    with context.Pool(2) as pool:
        names = pool.map_async(process_worker, tasks, chunksize=1).get(TIMEOUT)
    assert names == [task[2] for task in tasks]
    for (_, _, name, seed), _ in zip(tasks, names, strict=True):
        assert storage.open(name).read() == sample(POOLED_SIZE, seed)


THREADS = 16
ROUNDS = 3


@pytest.mark.parametrize("kind", ["filesystem", "memory", "s3"])
def test_threads_share_one_storage(settings: Any, tmp_path: Path, kind: str) -> None:
    # 16 KiB frames: a file of a few hundred KiB is many frames for the pool.
    storage = make_storage(
        settings, tmp_path, kind, [("zstd", {"frame_log2": 14}), "aes-gcm"]
    )
    # Every fourth thread saves under a name the others of its kind use too.
    # FileSystemStorage makes each a free name; on S3 the last upload wins, so
    # those threads read only once all of them saved, and get one whole write.
    # InMemoryStorage is left out: it hands every reader of a name one shared
    # stream and picks free names without a lock.
    shared = kind != "memory"
    barrier = threading.Barrier(THREADS)
    written: dict[str, list[bytes]] = {}
    lock = threading.Lock()
    errors: dict[int, str] = {}

    def work(index: int) -> None:
        try:
            rng = random.Random(index)
            for round_ in range(ROUNDS):
                size = rng.choice([0, 1, 5000, 16 * 1024, 200_000, 600_000])
                data = sample(size, 100 * index + round_)
                name = f"threads/{index}-{round_}.txt"
                if shared and index % 4 == 0:
                    name = f"threads/shared-{round_}.txt"
                barrier.wait(TIMEOUT)
                used = storage.save(name, ContentFile(data))
                with lock:
                    written.setdefault(used, []).append(data)
                barrier.wait(TIMEOUT)
                check_reads(storage, used, written[used])
                if kind != "s3":  # every save got a name of its own
                    assert written[used] == [data], f"{used} was saved twice"
        except BaseException:
            errors[index] = traceback.format_exc()
            barrier.abort()  # the others stop waiting for this one

    threads = [
        threading.Thread(target=work, args=(index,), daemon=True)
        for index in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 2 * TIMEOUT
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    assert not any(thread.is_alive() for thread in threads), "threads hung"
    assert not errors, "\n".join(errors.values())
    assert sum(map(len, written.values())) == ROUNDS * THREADS
    if kind == "filesystem":  # the shared names were really taken at once
        assert len([name for name in written if "shared-0" in name]) == THREADS // 4
    for name, writes in written.items():
        if kind == "s3":
            assert storage.open(name).read() in writes
        else:
            assert writes == [storage.open(name).read()], f"{name} lost a write"


def test_threads_saving_one_frame_files_through_several_storages_never_mix(
    settings: Any, tmp_path: Path
) -> None:
    # A 16-64 KiB file is compressed whole by its head check and that frame is kept
    # in the thread for its save: threads saving such files at once, the same
    # bytes through storages of other levels and frame sizes, each store their own.
    base = make_storage(settings, tmp_path, "filesystem", ["zstd", "aes-gcm"])
    storages = [
        base,
        LayeredStorage(
            inner=base.inner_alias,
            layers=[("zstd", {"level": 19, "frame_log2": 14}), "aes-gcm"],
        ),
        LayeredStorage(
            inner=base.inner_alias,
            layers=[("zstd", {"level": 1, "frame_log2": 16}), "aes-gcm"],
        ),
    ]
    barrier = threading.Barrier(THREADS)
    errors: dict[int, str] = {}

    def work(index: int) -> None:
        try:
            rng = random.Random(index)
            for round_ in range(6):
                size = rng.choice([16 * 1024, 16 * 1024 + 1, 40_000, 64 * 1024])
                data = b"".join(
                    b"thread %d file %d line %d\n" % (index, round_, line)
                    for line in range(size // 20)
                )[:size]
                barrier.wait(TIMEOUT)
                for number, storage in enumerate(storages):
                    name = f"one-frame/{index}-{round_}-{number}.txt"
                    assert storage.save(name, ContentFile(data)) == name
                    assert storage.open(name).read() == data, name
        except BaseException:
            errors[index] = traceback.format_exc()
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "threads hung"
    assert not errors, "\n".join(errors.values())


def test_a_frame_kept_at_one_level_is_not_stored_at_another(
    settings: Any, tmp_path: Path
) -> None:
    # The head check of a save begun (and not read) at level 1 keeps its frame;
    # the same bytes saved next at level 19, in frames no larger than the file,
    # reach the kept frame without a head check of their own to replace it.
    fast = make_storage(
        settings, tmp_path, "filesystem", [("zstd", {"level": 1}), "aes-gcm"]
    )
    strong = LayeredStorage(
        inner=fast.inner_alias,
        layers=[("zstd", {"level": 19, "frame_log2": 14}), "aes-gcm"],
    )
    data = sample(16 * 1024, 7)[: 8 * 1024] * 2
    alone = strong.save("alone.txt", ContentFile(data))
    pending = fast.pipeline.encode(io.BytesIO(data), fast.context("fast.txt"))
    after = strong.save("after.txt", ContentFile(data))
    pending.close()
    assert strong.open(after).read() == data
    assert strong.inner.size(after) == strong.inner.size(alone)
