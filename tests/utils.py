"""Helpers for tests: raw access to stored bytes, sizes on segment and frame edges."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import Storage

SEGMENT = 64 * 1024
FRAME = 1024 * 1024
SEGMENT_EDGES = [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 7]
FRAME_EDGES = [FRAME - 1, FRAME, FRAME + 1, 2 * FRAME + SEGMENT]


def stored_bytes(inner: Storage, name: str) -> bytes:
    """Return the bytes ``inner`` holds for ``name``."""
    with inner.open(name, "rb") as stored:
        data: bytes = stored.read()
    return data


def replace_stored(inner: Storage, name: str, data: bytes) -> None:
    """Overwrite what ``inner`` holds for ``name`` with ``data``."""
    inner.delete(name)
    saved = inner.save(name, ContentFile(data))
    assert saved == name


def tamper(inner: Storage, name: str, change: Callable[[bytearray], bytes]) -> None:
    """Rewrite the stored bytes of ``name`` through ``change``."""
    replace_stored(inner, name, change(bytearray(stored_bytes(inner, name))))


def flip_byte(offset: int) -> Callable[[bytearray], bytes]:
    """Return a ``tamper`` change that inverts the byte at ``offset``: always a
    change, where writing a fixed value is none if the byte already holds it."""

    def change(data: bytearray) -> bytes:
        data[offset] ^= 0xFF
        return bytes(data)

    return change


def sample(size: int, seed: int = 0) -> bytes:
    """Return ``size`` deterministic bytes, half compressible text, half random."""
    rng = random.Random(seed)
    words = [b"layered", b"storage", b"zstd", b"segment", b"frame", b"django", b" "]
    wanted = size - size // 2
    text = b"".join(rng.choice(words) for _ in range(size // 8 + 1))
    while len(text) < wanted:  # short words can fall short of the size
        text += text
    return text[:wanted] + rng.randbytes(size // 2)


def read_in_steps(stream: Any, step: int) -> bytes:
    """Return everything ``stream`` yields when read ``step`` bytes at a time."""
    out = io.BytesIO()
    while chunk := stream.read(step):
        out.write(chunk)
    return out.getvalue()


def probe_reads(location: str, probes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run every read path over each probed file; return what each did and cost.

    Meant for a fresh interpreter (``python -c``), as memory is measured with
    ``VmHWM``: this process sets Django up and warms up without starting a thread,
    then forks one child per probe, whose peak starts afresh at the fork. A probe
    is ``{"case", "stack", "name", "size"}`` (``size``: the plaintext length of a
    valid file of zeros, None for a file that must be refused); its report adds
    ``stored`` (bytes), ``growth`` (peak RSS above the child's start, bytes) and
    ``paths``: ``{path: [outcome, seconds]}`` with outcome ``"exact"``,
    ``"rejected"`` or what went wrong.
    """
    import json
    import os
    import traceback

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    from django.conf import settings
    from django.test.utils import override_settings

    from layered_storage import LayeredStorage

    config = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": location},
    }
    override_settings(STORAGES={**settings.STORAGES, "probe": config}).enable()
    for probe in probes:  # imports, keyring, inner storage: before any fork
        storage = LayeredStorage(inner="probe", layers=probe["stack"])
        warm = storage.save("warm-up.txt", ContentFile(b"warm up " * 100))
        assert storage.open(warm).read() == b"warm up " * 100
        storage.delete(warm)
    reports = []
    for probe in probes:
        readable, writable = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            os.close(readable)
            code = 0
            try:
                storage = LayeredStorage(inner="probe", layers=probe["stack"])
                report = _probe_read_paths(storage, probe["name"], probe["size"])
                report["case"] = probe["case"]
            except BaseException:
                report, code = (
                    {"case": probe["case"], "error": traceback.format_exc()},
                    1,
                )
            with os.fdopen(writable, "wb") as pipe:
                pipe.write(json.dumps(report).encode())
            os._exit(code)
        os.close(writable)
        with os.fdopen(readable, "rb") as pipe:
            raw = pipe.read()
        _, status = os.waitpid(pid, 0)
        report = json.loads(raw)
        assert status == 0, report.get("error", status)
        reports.append(report)
    return reports


#: How much of a valid file a probe reads: enough to see a bomb's frames go by. A
#: file that must be refused is read until it fails.
PROBE_READ_LIMIT = 64 * 1024 * 1024


def _probe_read_paths(storage: Any, name: str, size: int | None) -> dict[str, Any]:
    """Run size(), a whole read and seeks over ``name`` (a file of zeros, valid or
    not) in this fresh child; the outcome of each is ``"exact"`` (all it returned
    was right), ``"rejected"`` (a library error naming the file, after right bytes
    only), ``"completed"`` (a file that must be refused was not, but nothing it
    returned was wrong) or what went wrong."""
    import contextlib
    import time

    from layered_storage import LayeredStorageError
    from tests.memory_probe import peak_rss

    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # start the peak at the current size (a fork starts afresh)
    stored = storage.inner.size(name)
    before = peak_rss()
    limit = PROBE_READ_LIMIT if size is not None else 1 << 62

    def check(data: bytes, what: str) -> None:
        if data.count(0) != len(data):
            raise AssertionError(f"{what} returned bytes that are not the zeros stored")

    def size_path() -> None:
        answer = storage.size(name)
        if size is not None and answer != size:
            raise AssertionError(f"size() answered {answer}, not {size}")

    def read_path() -> None:
        with storage.open(name) as opened:
            total = 0
            while total < limit and (chunk := opened.read(1024 * 1024)):
                check(chunk, "read()")
                total += len(chunk)
        if size is not None and total != min(size, limit):
            raise AssertionError(f"read() ended after {total} bytes, not {size}")

    def seek_path() -> None:
        with storage.open(name) as opened:
            end = opened.seek(0, io.SEEK_END)
            for offset in (max(end - 10, 0), 0, end // 2, 4097):
                opened.seek(offset)
                check(opened.read(10), f"read at {offset}")

    paths: dict[str, list[Any]] = {}
    for path, run in (("size", size_path), ("read", read_path), ("seeks", seek_path)):
        started = time.perf_counter()
        try:
            run()
            outcome = "exact" if size is not None else "completed"
        except LayeredStorageError as exc:
            outcome = "rejected" if name in str(exc) else f"unnamed {exc!r}"
        except AssertionError as exc:
            outcome = f"wrong: {exc}"
        except Exception as exc:
            outcome = f"raised {exc!r}"
        paths[path] = [outcome, time.perf_counter() - started]
    return {"stored": stored, "growth": peak_rss() - before, "paths": paths}
