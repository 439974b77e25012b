"""The parallel pipeline: order, bounded work in flight, and failures in workers."""

from __future__ import annotations

import contextlib
import gc
import io
import random
import threading
import time
import weakref
from typing import Any

import pytest
import zstandard as zstd
from django.core.files.base import ContentFile

from layered_storage import LayeredStorage
from layered_storage.exceptions import ConfigurationError, ContainerError
from layered_storage.layers import compression
from layered_storage.layers.base import FileContext, ReadPolicy
from layered_storage.layers.compression import (
    CompressingStream,
    DecompressingReader,
    ZstdLayer,
)
from layered_storage.layers.encryption import EncryptingStream
from layered_storage.parallel import (
    ordered_map,
    overlapped_map,
    shared_pool,
    worker_count,
)
from layered_storage.pipeline import Pipeline
from tests.utils import read_in_steps, sample

F = 1 << 12


def test_results_come_in_order_whatever_finishes_first() -> None:
    rng = random.Random(3)
    delays = [rng.random() / 200 for _ in range(40)]

    def slow_square(item: int) -> int:
        time.sleep(delays[item])
        return item * item

    assert list(ordered_map(slow_square, range(40), workers=3)) == [
        i * i for i in range(40)
    ]


def test_work_in_flight_stays_within_the_window() -> None:
    lock = threading.Lock()
    drawn = 0
    finished = 0
    most_ahead = 0

    def items() -> Any:
        nonlocal drawn, most_ahead
        for item in range(50):
            with lock:
                drawn += 1
                most_ahead = max(most_ahead, drawn - finished)
            yield item

    for _ in ordered_map(lambda item: item, items(), workers=2):
        with lock:
            finished += 1
    assert most_ahead <= 2 * 2 + 1


def test_a_failing_item_raises_in_its_turn_and_cancels_the_rest() -> None:
    started: list[int] = []

    def work(item: int) -> int:
        started.append(item)
        if item == 3:
            raise ValueError("item 3 broke")
        time.sleep(0.001)
        return item

    results = ordered_map(work, range(1000), workers=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="item 3 broke"):
        next(results)
    time.sleep(0.05)
    assert len(started) < 20  # the window, not the whole input


def test_no_workers_runs_in_the_calling_thread() -> None:
    threads: set[int] = set()
    list(ordered_map(lambda i: threads.add(threading.get_ident()), range(5), workers=0))
    assert threads == {threading.get_ident()}


def test_default_workers_follow_the_cores(settings: Any) -> None:
    settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, "WORKERS": None}
    assert worker_count() in (0, 2, 3, 4)
    settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, "WORKERS": 0}
    assert worker_count() == 0


@pytest.mark.parametrize("workers", [0, 1, 2, 4])
def test_parallel_output_is_identical_to_sequential(
    settings: Any, workers: int
) -> None:
    data = sample(9 * F + 11)
    layer = ZstdLayer(frame_log2=12)
    outputs = []
    for count in (0, workers):
        settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, "WORKERS": count}
        pipeline = Pipeline([layer], ReadPolicy(require_encryption=False))
        outputs.append(pipeline.encode(io.BytesIO(data), FileContext("x")).read())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("step", [1000, F, 3 * F + 1])
def test_read_ahead_returns_the_same_bytes(step: int) -> None:
    data = sample(20 * F + 5)
    pipeline = Pipeline(
        [ZstdLayer(frame_log2=12)], ReadPolicy(require_encryption=False)
    )
    stored = pipeline.encode(io.BytesIO(data), FileContext("x")).read()
    reader = DecompressingReader(
        io.BytesIO(stored), file_name="x", policy=pipeline.policy, workers=2
    )
    assert read_in_steps(reader, step) == data
    reader.seek(7 * F + 3)
    assert reader.read(2 * F) == data[7 * F + 3 : 9 * F + 3]
    reader.seek(F)  # jumps back, then reads on with the workers again
    assert reader.read() == data[F:]


def test_corrupt_frame_found_by_a_worker_fails_the_read() -> None:
    data = sample(20 * F)
    pipeline = Pipeline(
        [ZstdLayer(frame_log2=12)], ReadPolicy(require_encryption=False)
    )
    stored = bytearray(pipeline.encode(io.BytesIO(data), FileContext("x")).read())
    stored[len(stored) // 2] ^= 0x40
    reader = DecompressingReader(
        io.BytesIO(bytes(stored)), file_name="x", policy=pipeline.policy, workers=2
    )
    with pytest.raises(ContainerError):
        read_in_steps(reader, F)


class BrokenCompressor:
    """A compressor that fails on its third frame, like a worker hitting an error."""

    calls = 0

    def compress(self, data: bytes) -> bytes:
        BrokenCompressor.calls += 1
        if BrokenCompressor.calls == 3:
            raise MemoryError("worker ran out of memory")
        frame: bytes = zstd.ZstdCompressor(write_content_size=True).compress(data)
        return frame


def test_worker_failure_aborts_the_save_and_leaves_no_file(
    fs_storage: LayeredStorage, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, "WORKERS": 2}
    BrokenCompressor.calls = 0
    monkeypatch.setattr(compression, "_compressor", lambda *_: BrokenCompressor())
    with pytest.raises(MemoryError):
        fs_storage.save("doomed.txt", ContentFile(sample(8 * 1024 * 1024)))
    assert not fs_storage.exists("doomed.txt")
    assert fs_storage.listdir("")[1] == []


@pytest.mark.parametrize("workers", [0, 2])
def test_size_asked_in_the_middle_of_a_streaming_read(workers: int) -> None:
    data = sample(20 * F + 5)
    pipeline = Pipeline(
        [ZstdLayer(frame_log2=12)], ReadPolicy(require_encryption=False)
    )
    stored = pipeline.encode(io.BytesIO(data), FileContext("x")).read()
    reader = DecompressingReader(
        io.BytesIO(stored), file_name="x", policy=pipeline.policy, workers=workers
    )
    head = reader.read(3 * F + 1)
    assert reader.size == len(data)
    assert head + reader.read() == data


def test_encrypted_file_reads_with_size_asked_midway(
    fs_storage: LayeredStorage,
) -> None:
    data = sample(5 * 1024 * 1024 + 3)
    name = fs_storage.save("mid.bin", ContentFile(data))
    with fs_storage.open(name) as opened:
        head = opened.read(1024 * 1024 + 7)
        assert opened.size == len(data)
        assert head + opened.read() == data


def test_a_single_item_runs_in_the_calling_thread() -> None:
    # A small file is one frame: handing it to a thread would only add latency.
    def where(item: int) -> int:
        return threading.get_ident()

    assert list(ordered_map(where, [1], workers=2)) == [threading.get_ident()]
    assert list(ordered_map(where, [], workers=2)) == []
    assert len(list(ordered_map(where, range(6), workers=2))) == 6


@pytest.mark.parametrize("mapper", [ordered_map, overlapped_map])
def test_the_worker_setting_is_read_only_for_a_second_item(
    settings: Any, mapper: Any
) -> None:
    # A small file pays nothing for the settings: WORKERS is not even validated.
    settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, "WORKERS": -1}
    assert list(mapper(lambda item: item * 2, [21])) == [42]
    assert list(mapper(lambda item: item, [])) == []
    with pytest.raises(ConfigurationError, match="WORKERS"):
        list(mapper(lambda item: item, range(2)))
    settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, "WORKERS": 0}
    caller = threading.get_ident()
    assert set(mapper(lambda item: threading.get_ident(), range(3))) == {caller}


# -- one item ahead, for work that holds the GIL ----------------------------------


@pytest.mark.parametrize("workers", [0, 1, 4])
def test_overlapped_results_come_in_order(workers: int) -> None:
    assert list(overlapped_map(lambda i: i * i, range(30), workers=workers)) == [
        i * i for i in range(30)
    ]


def test_overlapped_map_draws_one_item_ahead_of_each_result() -> None:
    drawn: list[int] = []

    def items() -> Any:
        for item in range(10):
            drawn.append(item)
            yield item

    for result in overlapped_map(lambda item: item, items(), workers=2):
        # The next item was drawn (and handed to the worker) before this result
        # came out, and nothing beyond it.
        assert drawn[-1] == min(result + 1, 9)


def test_overlapped_map_raises_a_failure_in_its_turn_and_cancels_the_rest() -> None:
    started: list[int] = []

    def work(item: int) -> int:
        started.append(item)
        if item == 3:
            raise ValueError("item 3 broke")
        return item

    results = overlapped_map(work, range(1000), workers=1)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="item 3 broke"):
        next(results)
    time.sleep(0.05)
    assert len(started) <= 5


def test_overlapped_map_runs_a_single_item_in_the_calling_thread() -> None:
    def where(item: int) -> int:
        return threading.get_ident()

    caller = threading.get_ident()
    assert list(overlapped_map(where, [1], workers=2)) == [caller]
    assert list(overlapped_map(where, [], workers=2)) == []
    assert set(overlapped_map(where, range(4), workers=0)) == {caller}


@pytest.mark.parametrize("mapper", [ordered_map, overlapped_map])
def test_slow_items_are_shared_between_the_caller_and_a_worker(mapper: Any) -> None:
    def where(item: int) -> int:
        time.sleep(0.05)  # long enough for an idle worker to take the next item
        return threading.get_ident()

    threads = list(mapper(where, range(4), workers=2))
    assert threading.get_ident() in threads  # the first is due before a worker has it
    assert len(set(threads)) > 1


@pytest.mark.parametrize("mapper", [ordered_map, overlapped_map])
def test_a_result_no_worker_has_started_is_computed_by_the_caller(
    mapper: Any,
) -> None:
    # Every worker of the shared pool is busy with another file's work: the caller
    # does its own instead of waiting behind it.
    workers = 2
    release = threading.Event()
    pool = shared_pool(1 if mapper is overlapped_map else workers)
    busy = [pool.submit(release.wait, 10) for _ in range(workers)]
    try:
        threads = list(
            mapper(lambda item: (item, threading.get_ident()), range(6), workers=2)
        )
    finally:
        release.set()
    assert threads == [(item, threading.get_ident()) for item in range(6)]
    assert all(future.result() for future in busy)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_encrypted_file_of_many_batches_round_trips(
    fs_storage: LayeredStorage, settings: Any, workers: int
) -> None:
    # Plaintext buffers are reused from batch to batch: a short last batch must
    # not carry bytes of an earlier one.
    settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, "WORKERS": workers}
    data = random.Random(workers).randbytes(5 * 1024 * 1024 + 3)
    name = fs_storage.save("batches.bin", ContentFile(data))
    assert fs_storage.open(name).read() == data
    assert fs_storage.size(name) == len(data)


def test_a_one_frame_text_file_is_saved_with_no_hand_off(
    fs_storage: LayeredStorage, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1 MiB of text is one frame, and seals in one batch: a worker could only add
    # a thread switch (and, with many requests at once, contention).
    settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, "WORKERS": 2}
    threads: set[str] = set()
    for cls, method in ((EncryptingStream, "_seal"), (CompressingStream, "_compress")):
        original = getattr(cls, method)

        def recorded(self: Any, item: Any, original: Any = original) -> Any:
            threads.add(threading.current_thread().name)
            return original(self, item)

        monkeypatch.setattr(cls, method, recorded)
    text = b"".join(b"line %d of a log file, as text\n" % i for i in range(40_000))
    data = text[: 1024 * 1024]
    name = fs_storage.save("one-frame.txt", ContentFile(data))
    assert threads == {threading.current_thread().name}
    assert fs_storage.open(name).read() == data


def test_sealing_failure_aborts_the_save_and_leaves_no_file(
    fs_storage: LayeredStorage, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, "WORKERS": 2}
    seal = EncryptingStream._seal
    calls = []
    lock = threading.Lock()

    def failing_seal(self: EncryptingStream, batch: Any) -> bytearray:
        with lock:
            calls.append(threading.current_thread().name)
            number = len(calls)
        if threading.current_thread() is threading.main_thread():
            # Leave the worker time to take the next batch, however loaded the
            # machine is, instead of this thread sealing every one itself.
            time.sleep(0.02)
        if number == 3:
            raise MemoryError("sealing worker ran out of memory")
        return seal(self, batch)

    monkeypatch.setattr(EncryptingStream, "_seal", failing_seal)
    noise = random.Random(5).randbytes(8 * 1024 * 1024)  # skips zstd: only sealing
    with pytest.raises(MemoryError):
        fs_storage.save("doomed.bin", ContentFile(noise))
    assert any(name.startswith("layered-storage") for name in calls)  # in a worker
    assert not fs_storage.exists("doomed.bin")
    assert fs_storage.listdir("")[1] == []


class Work:
    """Work whose result fails for one item, found by a worker or by the caller."""

    def run(self, item: int) -> int:
        time.sleep(0.01)  # long enough for a worker to take the next item
        if item in (1, 2):
            raise ValueError(f"item {item} broke")
        return item


@pytest.mark.parametrize("mapper", [ordered_map, overlapped_map])
def test_a_failure_leaves_no_cycle_that_keeps_the_work_alive(mapper: Any) -> None:
    # A reader failing on a frame must be freed when dropped, not when the garbage
    # collector next runs: it may hold a large seek table.
    gc.disable()
    try:
        for _ in range(5):
            work = Work()
            alive = weakref.ref(work)
            with contextlib.suppress(ValueError):
                list(mapper(work.run, range(8), workers=2))
            del work
            # Cancelled items leave the pool's queue as soon as a worker is free.
            deadline = time.monotonic() + 5
            while alive() is not None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert alive() is None
    finally:
        gc.enable()


def test_cancelled_work_waiting_in_the_pool_keeps_nothing_alive() -> None:
    # The one pool thread is busy with another file: this map's items wait in the
    # queue, the caller computes them itself and fails at item 1. The cancelled
    # entries still queued must not keep the work (a reader, its seek table) alive.
    release = threading.Event()
    busy = shared_pool(1).submit(release.wait, 10)
    gc.disable()
    try:
        work = Work()
        alive = weakref.ref(work)
        with contextlib.suppress(ValueError):
            list(ordered_map(work.run, range(8), workers=2))
        del work
        assert alive() is None
    finally:
        gc.enable()
        release.set()
    assert busy.result()
