"""What is timed: one ``Case`` per (thing, operation), all run on the same input file.

Save cases turn the input file into a stored file; read cases read a stored file back
in 1 MiB chunks (``storage.open(name).read``). Every case gets an untimed ``prepare``
(e.g. store the file a read case reads) and an untimed ``reset`` before each timed
run (e.g. delete what the previous save stored). Repetitions are interleaved across
cases, so a burst of load on a shared machine hits every case alike, and the best
time of the repetitions is kept.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import MiB, env, raw


def _noop() -> None:
    return None


@dataclass
class Case:
    """One timed operation on one input file."""

    name: str
    op: str  # "save" or "read"
    group: str  # "ceiling", "io", "layered", "peer" or "s3"
    run: Callable[[], None]
    prepare: Callable[[], None] = _noop
    reset: Callable[[], None] = _noop
    #: The stored size after a save (for the compression ratio), if known.
    stored: Callable[[], int] | None = None
    #: At most this many timed runs (for slow peers), or None for every round.
    max_reps: int | None = None
    times: list[float] = field(default_factory=list)
    stored_bytes: int | None = None


def save_from(storage: Any, name: str, src: Path) -> str:
    from django.core.files import File

    with open(src, "rb") as handle:
        return str(storage.save(name, File(handle)))


def _read_all(storage: Any, name: str) -> None:
    with storage.open(name, "rb") as handle:
        while handle.read(MiB):
            pass


def _unlink(path: Path) -> Callable[[], None]:
    """Return a reset that removes ``path``, so no save pays for a truncation."""
    return lambda: path.unlink(missing_ok=True)


def deleter(storage: Any, name: str) -> Callable[[], None]:
    def reset() -> None:
        if storage.exists(name):
            storage.delete(name)

    return reset


def storage_cases(
    label: str, group: str, storage: Any, src: Path, dataset: str, size_of: Any
) -> list[Case]:
    """Return the save and read cases of one Django storage.

    ``size_of(name)`` gives the stored size of what ``storage`` saved as ``name``.
    """
    slug = label.replace("+", "_").replace(" ", "_")
    save_name, read_name = f"{slug}/save-{dataset}.bin", f"{slug}/read-{dataset}.bin"
    saved: dict[str, str] = {}

    def save() -> None:
        saved["save"] = save_from(storage, save_name, src)

    def prepare_read() -> None:
        deleter(storage, read_name)()
        saved["read"] = save_from(storage, read_name, src)

    return [
        Case(
            label,
            "save",
            group,
            save,
            reset=deleter(storage, save_name),
            stored=lambda: int(size_of(saved["save"])),
        ),
        Case(
            label,
            "read",
            group,
            lambda: _read_all(storage, saved["read"]),
            prepare=prepare_read,
        ),
    ]


def _aead_cases(src: Path, out: Path, aead: str) -> list[Case]:
    sealer = raw.Sealer(aead)
    sealed, sealed_read = out / f"{aead}.seg", out / f"{aead}-read.seg"
    return [
        Case(
            f"raw {aead}",
            "save",
            "ceiling",
            lambda: raw.aead_encrypt(src, sealed, sealer),
            stored=lambda: sealed.stat().st_size,
            reset=_unlink(sealed),
        ),
        Case(
            f"raw {aead}",
            "read",
            "ceiling",
            lambda: raw.aead_decrypt(sealed_read, sealer),
            prepare=lambda: raw.aead_encrypt(src, sealed_read, sealer),
        ),
    ]


def _zstd_aead_cases(src: Path, out: Path) -> list[Case]:
    sealer = raw.Sealer("aes-gcm")
    both, both_read = out / "zstd-aes.seg", out / "zstd-aes-read.seg"
    sizes: list[int] = []

    def save() -> None:
        raw.zstd_aead_encrypt(src, both, sealer)

    def prepare() -> None:
        sizes[:] = raw.zstd_aead_encrypt(src, both_read, sealer)

    return [
        Case(
            "raw zstd+aes-gcm",
            "save",
            "ceiling",
            save,
            stored=lambda: both.stat().st_size,
            reset=_unlink(both),
        ),
        Case(
            "raw zstd+aes-gcm",
            "read",
            "ceiling",
            lambda: raw.zstd_aead_decrypt(both_read, sealer, sizes),
            prepare=prepare,
        ),
    ]


def ceiling_cases(src: Path, out: Path) -> list[Case]:
    """Return the raw loops: zstandard streaming, AEAD segments, zstd + AES-GCM."""
    zst, zst_read = out / "stream.zst", out / "stream-read.zst"
    cases = [
        Case(
            "zstandard stream",
            "save",
            "ceiling",
            lambda: raw.zstd_stream_compress(src, zst),
            stored=lambda: zst.stat().st_size,
            reset=_unlink(zst),
        ),
        Case(
            "zstandard stream",
            "read",
            "ceiling",
            lambda: raw.zstd_stream_decompress(zst_read),
            prepare=lambda: raw.zstd_stream_compress(src, zst_read),
        ),
    ]
    for aead in raw.AEADS:
        cases += _aead_cases(src, out, aead)
    return cases + _zstd_aead_cases(src, out)


def io_cases(src: Path, out: Path, dataset: str) -> list[Case]:
    """Return the I/O limits: a plain file copy and plain FileSystemStorage."""
    copy = out / "copy.dat"
    fs = env.plain_fs()
    return [
        Case(
            "plain copy",
            "save",
            "io",
            lambda: raw.copy_file(src, copy),
            stored=lambda: copy.stat().st_size,
            reset=_unlink(copy),
        ),
        Case("plain copy", "read", "io", lambda: raw.read_file(src)),
        *storage_cases("FileSystemStorage", "io", fs, src, dataset, fs.size),
    ]


def layered_cases(src: Path, dataset: str) -> list[Case]:
    """Return save and read cases of every LayeredStorage stack over the file system."""
    fs = env.plain_fs()
    cases: list[Case] = []
    for stack in env.STACKS:
        cases += storage_cases(
            stack, "layered", env.layered(stack), src, dataset, fs.size
        )
    return cases


PZIP_REPS = 3


def pzip_cases(src: Path, dataset: str, workdir: Path, key: str) -> list[Case]:
    """Return the django-pzip-storage cases (empty when it cannot be imported)."""
    storage = env.pzip_storage(workdir, key)
    if storage is None:
        return []
    cases = storage_cases("pzip", "peer", storage, src, dataset, storage.size)
    for case in cases:  # gzip level 6 is slow: a few runs suffice for a 5x target
        case.max_reps = PZIP_REPS
    save = cases[0]
    # PZipStorage stores ``name`` as ``name + ".pz"``; measure the stored file.
    save.reset = deleter(storage, f"pzip/save-{dataset}.bin.pz")
    save.stored = lambda: os.path.getsize(storage.path(f"pzip/save-{dataset}.bin.pz"))
    return cases


def measure(cases: list[Case], reps: int, *, log: Callable[[str], None]) -> None:
    """Prepare every case, then time ``reps`` interleaved rounds of all of them."""
    for case in cases:
        case.prepare()
    # Move everything alive now out of the collector's sight, so the collection
    # before each run costs microseconds instead of tens of milliseconds.
    gc.collect()
    gc.freeze()
    for _ in range(reps):
        for case in cases:
            if case.max_reps is not None and len(case.times) >= case.max_reps:
                continue
            case.reset()
            if case.op == "save":
                # Start every save with no dirty pages: writeback left over from
                # the previous case would otherwise throttle this one.
                os.sync()
            gc.collect()
            started = time.perf_counter()
            case.run()
            case.times.append(time.perf_counter() - started)
            if case.stored is not None and case.stored_bytes is None:
                with contextlib.suppress(OSError, KeyError):
                    case.stored_bytes = case.stored()
            case.reset()  # free the disk now, not before the next round
    log(f"    {len(cases)} cases x {reps} repetitions")


def summarise(case: Case, dataset: str, size: int) -> dict[str, Any]:
    """Return the JSON record of a measured case."""
    best = min(case.times)
    record: dict[str, Any] = {
        "name": case.name,
        "op": case.op,
        "group": case.group,
        "dataset": dataset,
        "size": size,
        "best_s": best,
        "median_s": statistics.median(case.times),
        "reps": len(case.times),
        "mib_s": size / MiB / best,
    }
    if case.stored_bytes is not None:
        record["stored_bytes"] = case.stored_bytes
    return record
