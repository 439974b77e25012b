"""Per inner backend: memory, requests per random read, and speed against the plain
backend.

``python -m benchmarks.backends [--inner s3,azure,gcs] [--memory-size 512]`` starts
the test servers on 127.0.0.1 (SeaweedFS, azurite, fake-gcs-server, as the tests
do) and measures, for each backend, through ``zstd+aes-gcm``:

- peak RSS growth of one save and one full read of a ``--memory-size`` MiB text
  file, each in a fresh process (``VmHWM``, reset first where the kernel allows);
- the requests one random 1 MiB read of a 256 MiB file costs, open included
  (counted by the backend's reader), worst of 8;
- the time to save and to read back the same plaintext, layered and through the
  plain backend (its own ``save`` and ``open().read()``), for text and for
  incompressible bytes: the ratio plain / layered (above 1: layered is faster).

Loopback servers on the same 2 cores: only ratios from one run mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks import MiB, datasets

BACKENDS = ("filesystem", "s3", "azure", "gcs")
STACK = ["zstd", "aes-gcm"]
MEMORY_LIMIT = 96 * MiB
RANGE_SIZE = 256 * MiB
RANGE_READS = 8
THROUGHPUT_SIZE = 64 * MiB
THROUGHPUT_REPS = 3
ROOT = Path(__file__).resolve().parent.parent


def _configure(backends: list[str], workdir: Path) -> None:
    """Configure Django with one inner storage per backend, servers started."""
    import django
    from django.conf import settings

    sys.path.insert(0, str(ROOT))
    from layered_storage.keys import generate_key

    storages: dict[str, Any] = {}
    for kind in backends:
        storages[kind] = _inner_config(kind, workdir)
    settings.configure(
        SECRET_KEY="layered-storage-benchmarks",
        USE_TZ=True,
        INSTALLED_APPS=[],
        STORAGES=storages,
        LAYERED_STORAGE={"KEYS": [os.environ.setdefault("BENCH_KEY", generate_key())]},
    )
    django.setup()


def _inner_config(kind: str, workdir: Path) -> dict[str, Any]:
    prefix = os.environ.setdefault("BENCH_PREFIX", f"bench-{uuid.uuid4().hex[:8]}")
    if kind == "filesystem":
        return {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(workdir / "media")},
        }
    if kind == "s3":
        from tests.s3server import ensure_s3_server

        s3 = ensure_s3_server()
        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": s3.bucket, "location": prefix},
        }
    if kind == "azure":
        from tests.emulators import ensure_azure_server

        azure = ensure_azure_server()
        return {
            "BACKEND": "storages.backends.azure_storage.AzureStorage",
            "OPTIONS": {
                "connection_string": azure.connection_string,
                "azure_container": azure.container,
                "location": prefix,
                "overwrite_files": True,
            },
        }
    from tests.emulators import ensure_gcs_server

    gcs = ensure_gcs_server()
    return {
        "BACKEND": "storages.backends.gcloud.GoogleCloudStorage",
        "OPTIONS": {
            "bucket_name": gcs.bucket,
            "project_id": gcs.project,
            "location": prefix,
        },
    }


def _layered(kind: str) -> Any:
    from layered_storage import LayeredStorage

    return LayeredStorage(inner=kind, layers=STACK)


# -- memory: one operation in a fresh process ----------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _memory_child(kind: str, op: str, source: Path, workdir: Path) -> dict[str, Any]:
    from django.core.files import File
    from django.core.files.base import ContentFile

    _configure([kind], workdir)
    storage = _layered(kind)
    warm = storage.save("memory/warm.bin", ContentFile(os.urandom(256 * 1024)))
    with storage.open(warm) as handle:
        handle.read()
    storage.delete(warm)
    name = "memory/probe.bin"
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    before = _status_kib("VmHWM")
    if op == "save":
        with open(source, "rb") as data:
            saved = storage.save(name, File(data, name))
        assert saved == name, saved
    else:
        with storage.open(name) as handle:
            while handle.read(MiB):
                pass
        storage.delete(name)
    return {"growth_mib": (_status_kib("VmHWM") - before) / 1024}


def memory(kind: str, source: Path, workdir: Path) -> dict[str, float]:
    """Return the peak RSS growth (MiB) of a save then a read, each in a fresh
    process."""
    found = {}
    for op in ("save", "read"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.backends",
                "--child",
                f"{kind}:{op}:{source}:{workdir}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"memory probe {kind} {op} failed:\n{done.stderr}")
        found[op] = json.loads(done.stdout.strip().splitlines()[-1])["growth_mib"]
    return found


# -- requests per random read --------------------------------------------------------


def _reader_classes() -> list[Any]:
    from layered_storage.backends.base import RangedReader

    classes: list[Any] = []
    pending = [RangedReader]
    while pending:
        cls = pending.pop()
        classes.append(cls)
        pending.extend(cls.__subclasses__())
    return [cls for cls in classes if "open" in cls.__dict__]


def range_requests(kind: str, source: Path) -> dict[str, Any]:
    """Return the requests of random 1 MiB reads of ``source`` (saved first), open
    included, and their median time."""
    from django.core.files import File

    storage = _layered(kind)
    with open(source, "rb") as data:
        name = storage.save("range/range.bin", File(data, "range.bin"))
    opened_readers: list[Any] = []
    originals = {}
    for cls in _reader_classes():
        original = cls.__dict__["open"].__func__
        originals[cls] = cls.__dict__["open"]

        def remember(cls_: Any, *args: Any, _original: Any = original) -> Any:
            reader = _original(cls_, *args)
            opened_readers.append(reader)
            return reader

        cls.open = classmethod(remember)
    picker = random.Random(7)
    counts: list[int] = []
    times: list[float] = []
    try:
        for _ in range(RANGE_READS):
            opened_readers.clear()
            offset = picker.randrange(RANGE_SIZE - MiB)
            started = time.perf_counter()
            with storage.open(name) as handle:
                handle.seek(offset)
                assert len(handle.read(MiB)) == MiB
            times.append(time.perf_counter() - started)
            counts.append(sum(reader.requests for reader in opened_readers))
    finally:
        for cls, original in originals.items():
            cls.open = original
        storage.delete(name)
    return {"requests": counts, "max": max(counts), "median_ms": _median(times) * 1000}


# -- layered against the plain backend -----------------------------------------------


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def throughput(kind: str, source: Path) -> dict[str, float]:
    """Return plain / layered time ratios for save and read of ``source``."""
    from django.core.files import File
    from django.core.files.storage import storages

    plain, layered = storages[kind], _layered(kind)
    timings: dict[str, list[float]] = {}
    for label, storage in (("plain", plain), ("layered", layered)):
        for _ in range(THROUGHPUT_REPS):
            name = f"speed/{label}-{uuid.uuid4().hex[:8]}.bin"
            started = time.perf_counter()
            with open(source, "rb") as data:
                name = storage.save(name, File(data, name))
            timings.setdefault(f"{label} save", []).append(
                time.perf_counter() - started
            )
            started = time.perf_counter()
            with storage.open(name) as handle:
                while handle.read(MiB):
                    pass
            timings.setdefault(f"{label} read", []).append(
                time.perf_counter() - started
            )
            storage.delete(name)
    size = source.stat().st_size / MiB
    result = {key: size / _median(values) for key, values in timings.items()}
    for op in ("save", "read"):
        result[f"{op} ratio"] = result[f"layered {op}"] / result[f"plain {op}"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backends")
    parser.add_argument("--inner", default="s3,azure,gcs")
    parser.add_argument("--memory-size", type=int, default=512, help="MiB")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-dataset", default="text", choices=datasets.DATASETS)
    parser.add_argument("--only-memory", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, op, source, workdir = args.child.split(":", 3)
        print(json.dumps(_memory_child(kind, op, Path(source), Path(workdir))))
        return 0
    kinds = args.inner.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="layered-bench-backends-"))
    data = workdir / "data"
    data.mkdir()
    _configure(kinds, workdir)
    results: dict[str, Any] = {}
    for kind in kinds:
        found: dict[str, Any] = {}
        log = print
        if not args.no_memory:
            size = args.memory_size * MiB
            source = datasets.ensure(args.memory_dataset, size, data)
            found["memory"] = memory(kind, source, workdir)
            log(f"{kind}: peak RSS growth {found['memory']} MiB")
        if args.only_memory:
            continue
        source = datasets.ensure("text", RANGE_SIZE, data)
        found["range"] = range_requests(kind, source)
        log(f"{kind}: random 1 MiB reads {found['range']}")
        for dataset in ("text", "random"):
            source = datasets.ensure(dataset, THROUGHPUT_SIZE, data)
            found[dataset] = throughput(kind, source)
            ratios = {k: round(v, 2) for k, v in found[dataset].items()}
            log(f"{kind}: {dataset} MiB/s and ratios {ratios}")
        results[kind] = found
    if not args.only_memory:
        _report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _report(results: dict[str, Any]) -> None:
    print(
        "\nbackend | save RSS | read RSS | requests/random read | "
        "text save/read ratio | random save/read ratio"
    )
    for kind, found in results.items():
        rss = found.get("memory", {})
        text, rand = found["text"], found["random"]
        print(
            f"{kind} | {rss.get('save', float('nan')):.1f} MiB | "
            f"{rss.get('read', float('nan')):.1f} MiB | {found['range']['max']} | "
            f"{text['save ratio']:.2f} / {text['read ratio']:.2f} | "
            f"{rand['save ratio']:.2f} / {rand['read ratio']:.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
