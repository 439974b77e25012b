"""Peak RSS of one save or one full read, each in a fresh subprocess.

Run as ``python -m benchmarks.memory --workdir DIR --target STACK --op save|read
--input FILE`` (the key comes in the environment). The child configures Django,
builds the storage and warms it up on a small file, then measures ``VmHWM`` (the
peak resident set size) from ``/proc/self/status`` before and after the operation.
Where the kernel allows it, the peak is first reset to the current RSS (``5`` into
``/proc/self/clear_refs``), so setup transients do not hide growth; ``ru_maxrss`` is
no use here because Linux carries the parent's peak across fork and exec.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import MiB, env

#: What a probe can measure: the layered stacks plus two references, and with S3
#: configured, ``STACK@s3`` (the stack over S3Storage).
TARGETS = (
    *env.STACKS,
    "FileSystemStorage",
    "pzip",
    *(f"{stack}@s3" for stack in env.STACKS),
)


def _status_kib(field: str) -> int:
    """Return a ``kB`` field of ``/proc/self/status``."""
    with open("/proc/self/status") as status:
        match = re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")
    return int(match.group(1))


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS; return whether the kernel allowed it."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


def _storage(target: str, workdir: Path, key: str) -> tuple[Any, str]:
    """Return the storage ``target`` names and the suffix it adds to stored names."""
    if target == "FileSystemStorage":
        return env.plain_fs(), ""
    if target == "pzip":
        storage = env.pzip_storage(workdir, key)
        if storage is None:
            raise SystemExit("django-pzip-storage is not installed")
        return storage, ".pz"
    stack, _, inner = target.partition("@")
    return env.layered(stack, inner or "default"), ""


def _child(args: argparse.Namespace) -> dict[str, Any]:
    """Measure one operation in this (fresh) process; return the numbers."""
    from django.core.files import File
    from django.core.files.base import ContentFile

    workdir = Path(args.workdir)
    env.configure(workdir, os.environ[env.KEY_ENV])
    storage, suffix = _storage(args.target, workdir, os.environ[env.KEY_ENV])
    slug = args.target.replace("+", "_").replace("@", "-")
    name = f"memory/{slug}.bin"
    stored = name + suffix

    # Warm up: import lazily loaded modules, derive keys, build compressors.
    warm = f"memory/warm-{slug}-{os.getpid()}.bin"
    warm_stored = storage.save(warm, ContentFile(os.urandom(256 * 1024)))
    with storage.open(warm_stored, "rb") as handle:
        handle.read()
    storage.delete(warm_stored)
    if args.op == "save" and storage.exists(stored):
        storage.delete(stored)

    reset = _reset_peak()
    rss_before = _status_kib("VmRSS")
    peak_before = _status_kib("VmHWM")
    if args.op == "save":
        with open(args.input, "rb") as source:
            storage.save(name, File(source))
    else:
        with storage.open(stored, "rb") as handle:
            while handle.read(MiB):
                pass
    peak_after = _status_kib("VmHWM")
    if args.op == "read":
        storage.delete(stored)
    return {
        "target": args.target,
        "op": args.op,
        "size": os.path.getsize(args.input),
        "rss_before_kib": rss_before,
        "peak_before_kib": peak_before,
        "peak_after_kib": peak_after,
        "growth_kib": peak_after - peak_before,
        "peak_reset": reset,
    }


def probe(
    workdir: Path, key: str, target: str, op: str, source: Path
) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; return its numbers."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        "--workdir",
        str(workdir),
        "--target",
        target,
        "--op",
        op,
        "--input",
        str(source),
    ]
    child_env = {**os.environ, env.KEY_ENV: key}
    root = str(Path(__file__).resolve().parent.parent)
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p
    )
    done = subprocess.run(
        command, env=child_env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {target} {op} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_all(
    targets: list[str],
    inputs: dict[int, Path],
    workdir: Path,
    key: str,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Probe save then read of every target at every size; return the records."""
    records = []
    for size, source in sorted(inputs.items()):
        for target in targets:
            for op in ("save", "read"):
                record = probe(workdir, key, target, op, source)
                records.append(record)
                log(
                    f"    {target:<20} {op:<4} {size / MiB:>6.0f} MiB: "
                    f"peak RSS +{record['growth_kib'] / 1024:.1f} MiB"
                )
    return records


def main(argv: list[str] | None = None) -> int:
    """Entry point of the probe subprocess; prints one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--target", required=True, choices=TARGETS)
    parser.add_argument("--op", required=True, choices=("save", "read"))
    parser.add_argument("--input", required=True)
    print(json.dumps(_child(parser.parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
