"""Small files: what one save and one open+read cost, against FileSystemStorage.

Most uploaded files are small, and each page view reads some, so the fixed cost
of a file (contexts, keys, tail reads, wrapper objects, thread hand-offs) is what
users feel. Per file, at 1 byte, 64 KiB of text and 1 MiB of text, through
``zstd+aes-gcm`` over FileSystemStorage and through that FileSystemStorage alone:

- ``save(name, ContentFile(data))`` of a new name;
- ``open(name)`` then ``read()`` of a stored file;
- at 64 KiB and 1 MiB, also the single-thread raw loop decoding the same bytes
  (``raw.zstd_aead_decrypt`` from a file): a file that size is one frame, so the
  layered read can only add to it; and the codec work alone (``raw.OneFrame``:
  compress and seal, open and decompress, in memory with reused contexts), which
  shows how much of each target against FileSystemStorage no layering can avoid.

Each case runs a batch of files per round; rounds alternate the cases and the best
round of each is kept, as time per file. ``python -m benchmarks.small`` runs just
this part.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import MiB, datasets, env, raw
from benchmarks.checks import Check

STACK = "zstd+aes-gcm"
SIZES = (1, 64 * 1024, MiB)
#: Files per timed batch: each batch takes some milliseconds.
BATCH = {1: 200, 64 * 1024: 100, MiB: 20}
ROUNDS = 9
#: Upper bounds of layered time / FileSystemStorage time, per (size, operation).
TARGETS = {
    (1, "save"): 2.5,
    (1, "read"): 6.0,
    (64 * 1024, "save"): 4.0,
    (64 * 1024, "read"): 5.0,
}
#: Upper bound of a 1 MiB layered open+read / the raw decode of that MiB.
RAW_TARGET = 1.3


def _label(size: int) -> str:
    if size >= MiB:
        return f"{size // MiB} MiB"
    if size >= 1024:
        return f"{size // 1024} KiB"
    return f"{size} B"


class Batch:
    """The files one case saves, then reads, in one round."""

    def __init__(self, storage: Any, prefix: str, count: int) -> None:
        self.storage = storage
        self.names = [f"{prefix}-{index}.bin" for index in range(count)]
        self.saved: list[str] = []

    def clear(self) -> None:
        for name in self.saved:
            self.storage.delete(name)
        self.saved = []

    def save(self, data: bytes) -> None:
        from django.core.files.base import ContentFile

        save = self.storage.save
        self.saved = [save(name, ContentFile(data)) for name in self.names]

    def read(self) -> None:
        for name in self.saved:
            with self.storage.open(name) as file:
                file.read()


def _timed(operation: Callable[[], None], count: int) -> float:
    started = time.perf_counter()
    operation()
    return (time.perf_counter() - started) / count


def _rounds(
    batches: dict[str, Batch],
    data: bytes,
    loops: dict[str, Callable[[], object]],
    rounds: int,
) -> dict[str, float]:
    """Time each batch's saves, then its reads (and each raw loop as often), in
    alternating rounds; return the best seconds per file of each case."""
    best: dict[str, float] = {}

    def keep(case: str, seconds: float) -> None:
        best[case] = min(best.get(case, seconds), seconds)

    count = len(next(iter(batches.values())).names)
    for _ in range(rounds):
        for label, batch in batches.items():
            batch.clear()
            keep(f"{label} save", _timed(functools.partial(batch.save, data), count))
        for label, batch in batches.items():
            keep(f"{label} read", _timed(batch.read, count))
        for case, loop in loops.items():
            keep(case, _timed(functools.partial(_repeat, loop, count), count))
    for batch in batches.values():
        batch.clear()
    return best


def _repeat(operation: Callable[[], object], count: int) -> None:
    for _ in range(count):
        operation()


def run(
    workdir: Path, log: Callable[[str], None], rounds: int = ROUNDS
) -> dict[str, Any]:
    """Measure; return the best microseconds per file of each case, and ratios."""
    text = datasets.ensure("text", MiB, workdir / "data").read_bytes()
    storages = {"FileSystemStorage": env.plain_fs(), STACK: env.layered(STACK)}
    sealer = raw.Sealer()
    folder = workdir / "small"
    folder.mkdir(exist_ok=True)
    results: dict[str, Any] = {}
    for size in SIZES:
        loops: dict[str, Callable[[], object]] = {}
        if size >= 64 * 1024:
            plain, sealed = folder / f"raw-{size}.dat", folder / f"raw-{size}.seg"
            plain.write_bytes(text[:size])
            frames = raw.zstd_aead_encrypt(plain, sealed, sealer)
            codec = raw.OneFrame(text[:size], sealer)
            loops = {
                "raw decode": functools.partial(
                    raw.zstd_aead_decrypt, sealed, sealer, frames
                ),
                "codec encode": codec.encode,
                "codec decode": codec.decode,
            }

        best = _rounds(
            {
                label: Batch(
                    storage, f"small/{label.replace('+', '_')}/{size}", BATCH[size]
                )
                for label, storage in storages.items()
            },
            b"x" if size == 1 else text[:size],
            loops,
            rounds,
        )
        micros = {case: seconds * 1e6 for case, seconds in best.items()}
        ratios = {
            op: micros[f"{STACK} {op}"] / micros[f"FileSystemStorage {op}"]
            for op in ("save", "read")
        }
        if loops:
            ratios["read / raw decode"] = micros[f"{STACK} read"] / micros["raw decode"]
            # How much of each target the codec work alone takes.
            for op, case in (("read", "codec decode"), ("save", "codec encode")):
                ratios[f"codec {op}"] = micros[case] / micros[f"FileSystemStorage {op}"]
        results[str(size)] = {"us_per_file": micros, "ratios": ratios}
        log(
            f"  {_label(size)}: "
            + ", ".join(f"{case} {value:.0f} us" for case, value in micros.items())
        )
    return results


def small_checks(result: dict[str, Any] | None) -> list[Check]:
    """Return the targets: per-file time against FileSystemStorage (and raw)."""
    found = []
    for (size, op), target in TARGETS.items():
        ratios = None if result is None else result[str(size)]["ratios"]
        value = None if ratios is None else ratios[op]
        verb = "save" if op == "save" else "open+read"
        floor = None if ratios is None else ratios.get(f"codec {op}")
        found.append(
            Check(
                f"{verb} of a {_label(size)} file, {STACK} / FileSystemStorage "
                "(time per file)",
                value,
                target,
                "<=",
                note=""
                if floor is None
                else f"[zstd and AES-GCM alone, in memory: {floor:.2f}]",
            )
        )
    value = None if result is None else result[str(MiB)]["ratios"]["read / raw decode"]
    found.append(
        Check(
            f"open+read of a 1 MiB text file, {STACK} / raw single-thread decode "
            "(time per file)",
            value,
            RAW_TARGET,
            "<=",
        )
    )
    return found


def report(result: dict[str, Any], emit: Callable[[str], None]) -> None:
    emit(f"\nSmall files, time per file ({STACK} over FileSystemStorage / plain):")
    for size in SIZES:
        entry = result[str(size)]
        us, ratios = entry["us_per_file"], entry["ratios"]
        line = (
            f"  {_label(size)}: save {us[f'{STACK} save']:.0f} / "
            f"{us['FileSystemStorage save']:.0f} us ({ratios['save']:.2f} x), "
            f"open+read {us[f'{STACK} read']:.0f} / "
            f"{us['FileSystemStorage read']:.0f} us ({ratios['read']:.2f} x)"
        )
        if "raw decode" in us:
            line += (
                f"; raw decode {us['raw decode']:.0f} us (open+read "
                f"{ratios['read / raw decode']:.2f} x that); zstd and AES-GCM alone, "
                f"in memory: encode {us['codec encode']:.0f} us, decode "
                f"{us['codec decode']:.0f} us"
            )
        emit(line)


def main() -> int:
    return env.run_alone(
        "small", lambda workdir, _key, log: run(workdir, log), report, small_checks
    )


if __name__ == "__main__":
    sys.exit(main())
