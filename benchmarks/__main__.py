"""``python -m benchmarks``: time every stack against its baselines, in one run.

Quick by default (1 MiB and 32 MiB files, 16 and 64 MiB memory probes; under two minutes
on two cores); ``--full`` adds files up to 1 GiB and 512 MiB / 1 GiB memory probes.
Target ratios use the largest size up to 64 MiB (page-cache resident). Exit status
0 whatever the targets say, unless ``--check`` is given and one fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import (
    MiB,
    cases,
    checks,
    datasets,
    env,
    files,
    link,
    maintenance,
    memory,
    reads,
    report,
    s3,
    serving,
    small,
    threads,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
STATIC = ROOT / "docs" / "_static"
#: (file size, repetitions) per mode.
QUICK_SIZES = [(MiB, 15), (32 * MiB, 9)]
FULL_SIZES = [(MiB, 15), (64 * MiB, 5), (1024 * MiB, 3)]
RATIO_MAX_SIZE = 64 * MiB
#: Larger S3 throughput runs fill the disk of a local SeaweedFS and take minutes.
S3_MAX_SIZE = 64 * MiB
QUICK_MEMORY = [16 * MiB, 64 * MiB]
FULL_MEMORY = [64 * MiB, 512 * MiB, 1024 * MiB]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in (
        "django",
        "zstandard",
        "cryptography",
        "django-layered-storage",
        "django-pzip-storage",
        "django-storages",
    ):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _load() -> str:
    """Return the 1-minute load average: other work on the machine skews ratios."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def _git_state() -> str:
    """Return the commit measured, marked ``+dirty`` when the tree has edits."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "layered_storage"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--full", action="store_true", help="sizes up to 1 GiB")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if any target fails"
    )
    parser.add_argument(
        "--tmpdir", type=Path, default=None, help="where temporary files go"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip RSS probes")
    parser.add_argument(
        "--no-link", action="store_true", help="skip S3 over a limited link"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help="write the plots into docs/_static (default: benchmarks/results/)",
    )
    parser.add_argument("--json", type=Path, default=RESULTS, help="JSON output path")
    return parser.parse_args(argv)


def _throughput(
    workdir: Path, key: str, sizes: list[tuple[int, int]], notes: list[str]
) -> list[dict[str, Any]]:
    """Time every case on every dataset and size; return the records."""
    data_dir, out = workdir / "data", workdir / "out"
    data_dir.mkdir()
    pzip_reason = env.pzip_unavailable_reason()
    if pzip_reason:
        notes.append(f"pzip: skipped: {pzip_reason}")
    if not env.s3_enabled():
        notes.append("S3: skipped (set AWS_ENDPOINT_URL_S3 and S3_BUCKET to run it)")
    elif max(size for size, _ in sizes) > S3_MAX_SIZE:
        notes.append(
            f"S3: throughput measured up to {S3_MAX_SIZE // MiB} MiB files only "
            "(a local SeaweedFS keeps deleted objects' space until vacuumed); "
            "memory probes run at every size"
        )
    records: list[dict[str, Any]] = []
    for size, reps in sizes:
        for dataset in datasets.DATASETS:
            started = time.perf_counter()
            src = datasets.ensure(dataset, size, data_dir)
            out.mkdir()
            found = [
                *cases.ceiling_cases(src, out),
                *cases.io_cases(src, out, dataset),
                *cases.layered_cases(src, dataset),
                *cases.pzip_cases(src, dataset, workdir, key),
            ]
            if env.s3_enabled() and size <= S3_MAX_SIZE:
                found += s3.s3_cases(src, dataset)
            _log(f"  {dataset} {size / MiB:g} MiB:")
            cases.measure(found, reps, log=_log)
            records += [cases.summarise(case, dataset, size) for case in found]
            shutil.rmtree(out)
            for folder in ("media", "pzip"):
                shutil.rmtree(workdir / folder, ignore_errors=True)
                (workdir / folder).mkdir()
            if size >= 256 * MiB:
                src.unlink()
            _log(f"    {time.perf_counter() - started:.1f} s")
    return records


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; return the exit status."""
    args = _parse(argv)
    started = time.perf_counter()
    from layered_storage.keys import generate_key

    workdir = Path(tempfile.mkdtemp(prefix="layered-bench-", dir=args.tmpdir))
    key = generate_key()
    env.configure(workdir, key)
    load = _load()  # before any work of ours: other work on the machine skews ratios
    versions = {**_versions(), "layered_storage tree": _git_state()}
    mode = "full" if args.full else "quick"
    print(
        f"django-layered-storage benchmarks ({mode}): "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; {os.cpu_count()} CPUs; load average {load} at start; temp dir {workdir}"
    )
    notes: list[str] = []
    range_probe: dict[str, Any] | None = None
    served: dict[str, Any] | None = None
    file_api: dict[str, Any] | None = None
    jobs: dict[str, Any] | None = None
    linked: dict[str, Any] | None = None
    try:
        _log("throughput:")
        sizes = FULL_SIZES if args.full else QUICK_SIZES
        records = _throughput(workdir, key, sizes, notes)
        if env.s3_enabled():
            _log("S3 random ranges:")
            src = datasets.ensure("text", s3.RANGE_FILE_SIZE, workdir / "data")
            range_probe = s3.range_reads(src)
            src.unlink()
            _log(f"S3 maintenance ({maintenance.OBJECTS} objects, --jobs):")
            jobs = maintenance.run(_log)
        _log("serving (WSGI, in process):")
        served = serving.run(workdir, _log)
        _log("file API (read(), open('wb')):")
        file_api = files.run(workdir, _log)
        _log("reads in a fresh process:")
        fresh_read = reads.run(workdir, key, _log)
        _log("small files:")
        small_files = small.run(workdir, _log)
        _log("8 threads against 1:")
        threaded = threads.run(workdir, _log)
        if not args.no_link:
            _log("S3 over a limited link:")
            linked = link.run(workdir, _log)
        mem_records: list[dict[str, Any]] = []
        if not args.no_memory:
            _log("memory:")
            inputs = {
                size: datasets.ensure("text", size, workdir / "data")
                for size in (FULL_MEMORY if args.full else QUICK_MEMORY)
            }
            targets = [*env.STACKS, "FileSystemStorage"]
            if env.pzip_unavailable_reason() is None:
                targets.append("pzip")
            if env.s3_enabled():
                targets += [f"{stack}@s3" for stack in s3.S3_STACKS]
            mem_records = memory.run_all(targets, inputs, workdir, key, _log)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    # Ratios come from the largest size that stays in the page cache: at 1 GiB,
    # writeback and eviction from the many stored copies dominate the timings.
    ratio_size = max(size for size, _ in sizes if size <= RATIO_MAX_SIZE)
    found = checks.throughput_checks(records, ratio_size)
    found += checks.memory_checks(mem_records, env.STACKS)
    s3_targets = [f"{stack}@s3" for stack in env.STACKS]
    found += checks.memory_checks(mem_records, s3_targets, " over S3")
    found += checks.range_checks(range_probe)
    found += serving.serving_checks(served)
    found += files.file_checks(file_api)
    found += reads.read_checks(fresh_read)
    found += small.small_checks(small_files)
    found += threads.thread_checks(threaded)
    found += link.link_checks(linked)
    found += maintenance.maintenance_checks(jobs)
    info = checks.info_ratios(records, ratio_size)
    report.throughput_table(records, print)
    report.memory_table(mem_records, print)
    report.checks_block(found, info, ratio_size, print)
    if range_probe is not None:
        print(
            f"S3 random 1 MiB reads of a {range_probe['size'] // MiB} MiB file "
            f"(open, seek, read): GetObject requests {range_probe['gets']}, median "
            f"{range_probe['layered_ms_median']:.0f} ms; one plain 1 MiB ranged GET "
            f"of the stored object: {range_probe['plain_get_ms_median']:.0f} ms"
        )
    if served is not None:
        serving.report(served, print)
    if file_api is not None:
        files.report(file_api, print)
    for result, show in (
        (fresh_read, reads.report),
        (small_files, small.report),
        (threaded, threads.report),
        (linked, link.report),
    ):
        if result is not None:
            show(result, print)
    if jobs is not None:
        maintenance.report(jobs, print)
    for note in notes:
        print(note)
    if not args.no_plots:
        # The committed plots change only when asked: a run on a noisy machine
        # should not rewrite what the docs show.
        plots = STATIC if args.update_docs else RESULTS.parent
        plots.mkdir(parents=True, exist_ok=True)
        report.plot_throughput(records, ratio_size, plots / "throughput.png")
        if mem_records:
            report.plot_memory(mem_records, plots / "memory.png")
    elapsed = time.perf_counter() - started
    report.write_json(
        args.json,
        {
            "mode": mode,
            "versions": versions,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "elapsed_s": elapsed,
            "load_at_start": load,
            "throughput": records,
            "memory": mem_records,
            "s3_range_reads": range_probe,
            "serving": served,
            "file_api": file_api,
            "fresh_read": fresh_read,
            "small_files": small_files,
            "threads": threaded,
            "s3_link": linked,
            "maintenance": jobs,
            "checks": [check.as_dict() for check in found],
            "info_ratios": dict(info),
            "notes": notes,
        },
    )
    failed = [check for check in found if check.status == "FAIL"]
    print(
        f"\n{len(found) - len(failed)} of {len(found)} targets met or skipped, "
        f"{len(failed)} failed; {elapsed:.0f} s; JSON in {args.json}"
    )
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
