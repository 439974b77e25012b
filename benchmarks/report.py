"""Output: the stdout tables, ``benchmarks/results/latest.json`` and two PNG plots."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import MiB
from benchmarks.checks import Check

Printer = Callable[[str], None]
GROUP_TITLES = {
    "ceiling": "raw ceilings",
    "io": "I/O limits",
    "layered": "LayeredStorage (FileSystemStorage inner)",
    "peer": "peer",
    "s3": "S3",
}


def _size(size: int) -> str:
    return f"{size / MiB:g} MiB" if size < 1024 * MiB else f"{size / MiB / 1024:g} GiB"


def throughput_table(records: list[dict[str, Any]], emit: Printer) -> None:
    """Print one table per dataset and size: save and read MiB/s, stored size."""
    keys = sorted(
        {(r["size"], r["dataset"]) for r in records}, key=lambda k: (-k[0], k[1])
    )
    for size, dataset in keys:
        mine = [r for r in records if r["size"] == size and r["dataset"] == dataset]
        emit(f"\n{dataset}, {_size(size)} (best of {mine[0]['reps']}; MiB/s)")
        emit(
            f"  {'case':<34} {'save':>9} {'read':>9} {'stored':>8}"
            f" {'save med':>9} {'read med':>9}"
        )
        group = None
        names = list(dict.fromkeys(r["name"] for r in mine))
        for name in names:
            rows = {r["op"]: r for r in mine if r["name"] == name}
            first = next(iter(rows.values()))
            if first["group"] != group:
                group = first["group"]
                emit(f"  -- {GROUP_TITLES.get(group, group)}")
            save, read = rows.get("save"), rows.get("read")
            stored = save.get("stored_bytes") if save else None
            emit(
                f"  {name:<34} {_speed(save, 'mib_s'):>9} {_speed(read, 'mib_s'):>9}"
                f" {'' if stored is None else f'{100 * stored / size:.1f}%':>8}"
                f" {_speed(save, 'median_s'):>9} {_speed(read, 'median_s'):>9}"
            )


def _speed(record: dict[str, Any] | None, field: str) -> str:
    if record is None:
        return "-"
    if field == "mib_s":
        return f"{record['mib_s']:.0f}"
    return f"{record['size'] / MiB / record['median_s']:.0f}"


def memory_table(records: list[dict[str, Any]], emit: Printer) -> None:
    """Print peak RSS growth per target, operation and size."""
    if not records:
        return
    emit("\nPeak RSS growth (VmHWM in a fresh process, over its post-setup baseline)")
    emit(f"  {'target':<20} {'size':>9} {'save':>10} {'read':>10} {'baseline':>10}")
    sizes = sorted({r["size"] for r in records})
    targets = list(dict.fromkeys(r["target"] for r in records))
    for size in sizes:
        for target in targets:
            rows = {
                r["op"]: r
                for r in records
                if r["target"] == target and r["size"] == size
            }
            if not rows:
                continue
            cells = [
                f"{rows[op]['growth_kib'] / 1024:.1f} MiB" if op in rows else "-"
                for op in ("save", "read")
            ]
            base = next(iter(rows.values()))["peak_before_kib"] / 1024
            emit(
                f"  {target:<20} {_size(size):>9} {cells[0]:>10} {cells[1]:>10}"
                f" {base:>6.1f} MiB"
            )


def checks_block(
    checks: list[Check], info: list[tuple[str, float]], size: int, emit: Printer
) -> None:
    """Print the acceptance ratios as PASS/FAIL lines, then the informative ones."""
    emit(f"\nAcceptance ratios (throughput on {_size(size)} files)")
    for check in checks:
        emit(f"  {check.line()}")
    if info:
        emit("\nOther ratios (no target)")
        for label, value in info:
            emit(f"  {label}: {value:.2f}")


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write the run's results as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def plot_throughput(records: list[dict[str, Any]], size: int, path: Path) -> None:
    """Plot save and read throughput by case and dataset (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [r for r in records if r["size"] == size]
    datasets = list(dict.fromkeys(r["dataset"] for r in mine))
    names = list(dict.fromkeys(r["name"] for r in mine))
    groups = {r["name"]: r["group"] for r in mine}
    figure, axes = plt.subplots(
        1, 2, figsize=(13, 0.38 * len(names) + 1.8), sharey=True
    )
    height = 0.8 / max(len(datasets), 1)
    for axis, op in zip(axes, ("save", "read"), strict=True):
        for offset, dataset in enumerate(datasets):
            speeds = {
                r["name"]: r["mib_s"]
                for r in mine
                if r["op"] == op and r["dataset"] == dataset
            }
            rows = [i for i, name in enumerate(names) if name in speeds]
            axis.barh(
                [i + offset * height for i in rows],
                [speeds[names[i]] for i in rows],
                height=height,
                label=dataset,
            )
        axis.set_xscale("log")
        axis.set_title(f"{op} (MiB/s, {_size(size)} files)")
        axis.grid(axis="x", which="both", alpha=0.3)
    axes[0].set_yticks([i + 0.4 - height / 2 for i in range(len(names))])
    axes[0].set_yticklabels(
        [f"LayeredStorage {n}" if groups[n] == "layered" else n for n in names]
    )
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_memory(records: list[dict[str, Any]], path: Path) -> None:
    """Plot peak RSS growth against file size, one line per target and operation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    targets = list(dict.fromkeys(r["target"] for r in records))
    colors = plt.get_cmap("tab10")
    for number, target in enumerate(targets):
        for op, style in (("save", "-o"), ("read", "--s")):
            points = sorted(
                (r["size"] / MiB, r["growth_kib"] / 1024)
                for r in records
                if r["target"] == target and r["op"] == op
            )
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(
                    xs, ys, style, color=colors(number % 10), label=f"{target} {op}"
                )
    top = max([r["growth_kib"] / 1024 for r in records] + [64])
    axis.set_xlim(0, max(r["size"] for r in records) / MiB * 1.05)
    axis.set_ylim(0, top * 1.15)
    axis.axhline(64, color="red", linewidth=1, linestyle=":", label="64 MiB target")
    axis.set_xlabel("file size (MiB)")
    axis.set_ylabel("peak RSS growth (MiB)")
    axis.set_title("Peak RSS growth of one save / one full read")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small", ncol=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
