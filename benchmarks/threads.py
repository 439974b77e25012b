"""Many requests at once: 8 threads against 1, each on different 1 MiB files.

A web server reads and writes many files at once from several threads, which share
the library's worker pool and the GIL. ``FILES`` different 1 MiB text files are
saved through ``zstd+aes-gcm`` over FileSystemStorage, then read back
(``open`` and ``read()``), once by one thread doing them all in turn and once by
8 threads each taking every 8th file. Rounds alternate the two and the best of each
is kept; the target is the aggregate throughput of 8 threads against 1, for saves
and for reads (on two cores at most 2). The same rounds time the raw loops of
``raw`` (compress and seal file to file, open and decompress) over the same files
in 1 and 8 threads: what this machine gives the primitives alone at that moment.

``python -m benchmarks.threads`` runs just this part.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import MiB, datasets, env, raw
from benchmarks.checks import Check

STACK = "zstd+aes-gcm"
THREADS = 8
FILES = 64
ROUNDS = 5
TARGET = 1.6


def _contents(workdir: Path) -> list[bytes]:
    """Return ``FILES`` different MiBs of text (consecutive slices of the dataset)."""
    text = datasets.ensure("text", FILES * MiB, workdir / "data").read_bytes()
    return [text[index * MiB : (index + 1) * MiB] for index in range(FILES)]


def _in_threads(threads: int, work: Callable[[int], None]) -> float:
    """Run ``work(index)`` for every file, each thread taking every n-th; return
    the seconds until all are done."""
    if threads == 1:
        started = time.perf_counter()
        for index in range(FILES):
            work(index)
        return time.perf_counter() - started

    def share(first: int) -> None:
        for index in range(first, FILES, threads):
            work(index)

    with ThreadPoolExecutor(threads) as pool:
        # Started before the clock, so thread creation is not what is measured.
        pool.submit(lambda: None).result()
        started = time.perf_counter()
        for future in [pool.submit(share, first) for first in range(threads)]:
            future.result()
        return time.perf_counter() - started


def run(
    workdir: Path, log: Callable[[str], None], rounds: int = ROUNDS
) -> dict[str, Any]:
    """Measure; return the best seconds per case and the ratios."""
    from django.core.files.base import ContentFile

    contents = _contents(workdir)
    storage = env.layered(STACK)
    names = [f"threads/{index}.txt" for index in range(FILES)]
    saved: list[str] = list(names)

    def save(index: int) -> None:
        saved[index] = storage.save(names[index], ContentFile(contents[index]))

    def read(index: int) -> None:
        with storage.open(saved[index]) as file:
            if len(file.read()) != MiB:
                raise AssertionError(f"{saved[index]} did not read back whole")

    folder = workdir / "threads-raw"
    folder.mkdir(exist_ok=True)
    plain = [folder / f"{index}.txt" for index in range(FILES)]
    sealed = [folder / f"{index}.seg" for index in range(FILES)]
    for path, content in zip(plain, contents, strict=True):
        path.write_bytes(content)
    sealer = raw.Sealer()
    sizes = [
        raw.zstd_aead_encrypt(p, s, sealer) for p, s in zip(plain, sealed, strict=True)
    ]

    def raw_save(index: int) -> None:
        raw.zstd_aead_encrypt(plain[index], sealed[index], sealer)

    def raw_read(index: int) -> None:
        raw.zstd_aead_decrypt(sealed[index], sealer, sizes[index])

    works = (
        ("save", save),
        ("read", read),
        ("raw save", raw_save),
        ("raw read", raw_read),
    )
    best: dict[str, float] = {}
    for _ in range(rounds):
        for threads in (1, THREADS):
            for name in saved:
                if storage.exists(name):
                    storage.delete(name)
            for op, work in works:
                seconds = _in_threads(threads, work)
                case = f"{op}, {threads} thread{'s' if threads > 1 else ''}"
                best[case] = min(best.get(case, seconds), seconds)
    for name in saved:
        storage.delete(name)
    mb_per_s = {case: FILES * MiB / seconds / 1e6 for case, seconds in best.items()}
    ratios = {
        op: best[f"{op}, 1 thread"] / best[f"{op}, {THREADS} threads"]
        for op, _ in works
    }
    log(
        "  " + ", ".join(f"{case} {speed:.0f} MB/s" for case, speed in mb_per_s.items())
    )
    return {"files": FILES, "threads": THREADS, "mb_per_s": mb_per_s, "ratios": ratios}


def thread_checks(result: dict[str, Any] | None) -> list[Check]:
    """Return the targets: 8 threads' aggregate throughput against 1 thread's."""
    return [
        Check(
            f"{op} of different 1 MiB text files, {THREADS} threads / 1 thread, "
            f"{STACK} (aggregate throughput)",
            None if result is None else result["ratios"][op],
            TARGET,
            note="[2 cores: at most 2"
            + (
                f"; the raw loops reached {result['ratios'][f'raw {op}']:.2f}]"
                if result is not None and f"raw {op}" in result["ratios"]
                else "]"
            ),
        )
        for op in ("save", "read")
    ]


def report(result: dict[str, Any], emit: Callable[[str], None]) -> None:
    speeds, ratios = result["mb_per_s"], result["ratios"]
    emit(
        f"\n{result['threads']} threads against 1, {result['files']} different 1 MiB "
        f"text files, {STACK} over FileSystemStorage:"
    )
    for op in ("save", "read", "raw save", "raw read"):
        if f"{op}, 1 thread" not in speeds:
            continue
        emit(
            f"  {op}: {speeds[f'{op}, 1 thread']:.0f} MB/s in 1 thread, "
            f"{speeds[f'{op}, {THREADS} threads']:.0f} MB/s in {THREADS} "
            f"({ratios[op]:.2f} x)"
        )


def main() -> int:
    return env.run_alone(
        "threads", lambda workdir, _key, log: run(workdir, log), report, thread_checks
    )


if __name__ == "__main__":
    sys.exit(main())
