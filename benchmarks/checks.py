"""The acceptance targets, each a ratio of two measurements from the same run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks import MiB

MEMORY_LIMIT = 64 * MiB
#: The file size the memory target is about; smaller runs check their largest.
MEMORY_TARGET_SIZE = 512 * MiB


@dataclass
class Check:
    """One target: ``value`` compared with ``target`` (``>=``; ``<`` for memory;
    ``<=`` for costs, such as a time against a baseline's)."""

    label: str
    value: float | None
    target: float
    comparison: str = ">="
    note: str = ""
    #: Printed after the value and target; by default MiB for ``<`` (memory).
    unit: str | None = None

    @property
    def status(self) -> str:
        if self.value is None:
            return "SKIP"
        if self.comparison == ">=":
            return "PASS" if self.value >= self.target else "FAIL"
        if self.comparison == "<=":
            return "PASS" if self.value <= self.target else "FAIL"
        return "PASS" if self.value < self.target else "FAIL"

    def line(self) -> str:
        """Return the printed form, e.g. ``PASS  label: 0.93 (target >= 0.85)``."""
        unit = self.unit
        if unit is None:
            unit = " MiB" if self.comparison == "<" else ""
        value = "n/a" if self.value is None else f"{self.value:.2f}{unit}"
        note = f" {self.note}" if self.note else ""
        target = f"target {self.comparison} {self.target:g}{unit}"
        return f"{self.status:<4}  {self.label}: {value} ({target}){note}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


#: (label, numerator, denominator, target, note); a term is (case, op, dataset).
RATIOS: list[tuple[str, tuple[str, str, str], tuple[str, str, str], float, str]] = [
    (
        "zstd-only save / zstandard streaming (text)",
        ("zstd", "save", "text"),
        ("zstandard stream", "save", "text"),
        0.85,
        "",
    ),
    (
        "aes-gcm read / raw AES-GCM decrypt (text)",
        ("aes-gcm", "read", "text"),
        ("raw aes-gcm", "read", "text"),
        0.80,
        "",
    ),
    (
        "aes-gcm save / raw AES-GCM encrypt (text)",
        ("aes-gcm", "save", "text"),
        ("raw aes-gcm", "save", "text"),
        0.80,
        "",
    ),
    (
        "zstd+aes-gcm save / zstd-only save (text)",
        ("zstd+aes-gcm", "save", "text"),
        ("zstd", "save", "text"),
        0.85,
        "",
    ),
    (
        "zstd+aes-gcm read / zstd-only read (text)",
        ("zstd+aes-gcm", "read", "text"),
        ("zstd", "read", "text"),
        0.85,
        "",
    ),
    (
        "zstd+aes-gcm save (text) / raw single-thread ceiling",
        ("zstd+aes-gcm", "save", "text"),
        ("raw zstd+aes-gcm", "save", "text"),
        1.6,
        "[parallel pipeline, 2 cores]",
    ),
    (
        "zstd+aes-gcm read (text) / raw single-thread read ceiling",
        ("zstd+aes-gcm", "read", "text"),
        ("raw zstd+aes-gcm", "read", "text"),
        1.3,
        "[parallel pipeline, 2 cores]",
    ),
    (
        "zstd+aes-gcm save (random) / plain copy",
        ("zstd+aes-gcm", "save", "random"),
        ("plain copy", "save", "random"),
        0.6,
        "",
    ),
    (
        "zstd+aes-gcm vs pzip, save (text)",
        ("zstd+aes-gcm", "save", "text"),
        ("pzip", "save", "text"),
        5.0,
        "",
    ),
    (
        "zstd+aes-gcm vs pzip, read (text)",
        ("zstd+aes-gcm", "read", "text"),
        ("pzip", "read", "text"),
        1.0,
        "",
    ),
    *(
        (
            f"{stack} over S3 / S3Storage moving its stored bytes, {op} ({dataset})",
            (f"{stack} over S3", op, dataset),
            (f"S3Storage ({stack} bytes)", op, dataset),
            0.8,
            "[S3 on SeaweedFS on 127.0.0.1]",
        )
        for stack in ("zstd+aes-gcm", "aes-gcm")
        for dataset in ("text", "random")
        for op in ("save", "read")
    ),
]

#: Ratios printed for information only.
INFO: list[tuple[str, tuple[str, str, str], tuple[str, str, str]]] = [
    (
        "chacha20-poly1305 save / raw ChaCha20-Poly1305 encrypt (text)",
        ("chacha20-poly1305", "save", "text"),
        ("raw chacha20-poly1305", "save", "text"),
    ),
    (
        "chacha20-poly1305 read / raw ChaCha20-Poly1305 decrypt (text)",
        ("chacha20-poly1305", "read", "text"),
        ("raw chacha20-poly1305", "read", "text"),
    ),
    (
        "zstd-only read / zstandard streaming decompress (text)",
        ("zstd", "read", "text"),
        ("zstandard stream", "read", "text"),
    ),
    (
        "aes-gcm save / FileSystemStorage save (random)",
        ("aes-gcm", "save", "random"),
        ("FileSystemStorage", "save", "random"),
    ),
    (
        "aes-gcm read / FileSystemStorage read (random)",
        ("aes-gcm", "read", "random"),
        ("FileSystemStorage", "read", "random"),
    ),
    (
        "zstd+aes-gcm save (jsonl) / raw single-thread ceiling",
        ("zstd+aes-gcm", "save", "jsonl"),
        ("raw zstd+aes-gcm", "save", "jsonl"),
    ),
    # What zstd alone costs next to the plain transfer of the compressed bytes: on
    # two cores a layered S3 save or read cannot beat twice this.
    (
        "zstandard stream save, one thread / S3Storage save of zstd+aes-gcm bytes "
        "(text)",
        ("zstandard stream", "save", "text"),
        ("S3Storage (zstd+aes-gcm bytes)", "save", "text"),
    ),
    (
        "zstandard stream read, one thread / S3Storage read of zstd+aes-gcm bytes "
        "(text)",
        ("zstandard stream", "read", "text"),
        ("S3Storage (zstd+aes-gcm bytes)", "read", "text"),
    ),
]


def _index(
    records: Iterable[dict[str, Any]], size: int
) -> dict[tuple[str, ...], float]:
    return {
        (r["name"], r["op"], r["dataset"]): r["mib_s"]
        for r in records
        if r["size"] == size
    }


def _ratio(
    speeds: dict[tuple[str, ...], float], top: tuple[str, ...], bottom: tuple[str, ...]
) -> float | None:
    if top not in speeds or bottom not in speeds:
        return None
    return speeds[top] / speeds[bottom]


def throughput_checks(records: list[dict[str, Any]], size: int) -> list[Check]:
    """Return the ratio targets, measured on files of ``size`` bytes."""
    speeds = _index(records, size)
    return [
        Check(label, _ratio(speeds, top, bottom), target, note=note)
        for label, top, bottom, target, note in RATIOS
    ]


def info_ratios(records: list[dict[str, Any]], size: int) -> list[tuple[str, float]]:
    """Return the informative ratios that could be computed."""
    speeds = _index(records, size)
    found = []
    for label, top, bottom in INFO:
        value = _ratio(speeds, top, bottom)
        if value is not None:
            found.append((label, value))
    return found


def memory_checks(
    records: list[dict[str, Any]], stacks: Iterable[str], where: str = ""
) -> list[Check]:
    """Return the peak-RSS targets for the layered stacks (worst stack per op)."""
    layered = [r for r in records if r["target"] in set(stacks)]
    checks = []
    for op in ("save", "read"):
        mine = [r for r in layered if r["op"] == op]
        if not mine:
            if not where:
                checks.append(Check(f"peak RSS growth, {op}", None, 64, "<"))
            continue
        at_target = [r for r in mine if r["size"] == MEMORY_TARGET_SIZE]
        size = MEMORY_TARGET_SIZE if at_target else max(r["size"] for r in mine)
        worst = max(
            (r for r in mine if r["size"] == size), key=lambda r: r["growth_kib"]
        )
        note = "" if at_target else "[512 MiB is measured by --full]"
        checks.append(
            Check(
                f"peak RSS growth{where}, {op} of {size // MiB} MiB "
                f"(worst stack: {worst['target']})",
                worst["growth_kib"] / 1024,
                MEMORY_LIMIT / MiB,
                "<",
                note,
            )
        )
    return checks


def range_checks(probe: dict[str, Any] | None) -> list[Check]:
    """Return the S3 random-range target: fewer than 3 GETs, the open included."""
    label = (
        "S3 GetObject requests per random 1 MiB read of a 256 MiB file, open included"
    )
    if probe is None:
        return []
    return [
        Check(
            label,
            probe["gets_max"],
            3,
            "<",
            f"[worst of {probe['reads']} reads]",
            unit="",
        )
    ]
