"""Maintenance at bucket scale: ``layered_verify --jobs 16`` against ``--jobs 1`` over
2,000 small objects on S3 (SeaweedFS), each run as an operator runs the command.

Twice: on the local server as it is, where a request costs CPU on both ends and
hardly waits (on two cores the speed-up is bounded by CPU, whatever the client
does: the ceiling is measured too, plain boto3 GETs of the same objects from 1 and
16 threads); and with every request delayed by ``RTT`` in the client, standing for
the network between a server and a real S3 region, which is what ``--jobs``
overlaps. ``python -m benchmarks.maintenance`` runs just this part, starting a
SeaweedFS of its own (``tests/s3server.py``) when ``AWS_ENDPOINT_URL_S3`` is unset.
"""

from __future__ import annotations

import io
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import env
from benchmarks.checks import Check

OBJECTS = 2000
JOBS = 16
#: The request delay that stands for a remote S3 (first-byte latency of a small
#: GET within a region is typically 10-30 ms).
RTT = 0.010
#: --jobs 16 against --jobs 1, with RTT.
TARGET = 5.0
ALIAS = "maintenance-bench"


@contextmanager
def _layered_s3() -> Iterator[Any]:
    """Register a LayeredStorage over a fresh prefix of the S3 bucket; yield it."""
    from django.conf import settings
    from django.core.files.storage import storages
    from django.test import override_settings

    inner = {
        **settings.STORAGES["s3"],
        "OPTIONS": {
            **settings.STORAGES["s3"].get("OPTIONS", {}),
            "location": f"maintenance-bench-{uuid.uuid4().hex}",
        },
    }
    configured = {
        **settings.STORAGES,
        f"{ALIAS}-inner": inner,
        ALIAS: {
            "BACKEND": "layered_storage.LayeredStorage",
            "OPTIONS": {"inner": f"{ALIAS}-inner", "layers": ["zstd", "aes-gcm"]},
        },
    }
    with override_settings(STORAGES=configured):
        yield storages[ALIAS]


def _fill(storage: Any, count: int) -> list[str]:
    """Store ``count`` small layered objects, one PUT each; return their keys."""
    inner = storage.inner
    client = inner.connection.meta.client
    names = [f"objects/{i // 100:02}/{i:05}.txt" for i in range(count)]

    def put(name: str) -> str:
        data = f"small object {name}\n".encode()
        stored = storage.pipeline.encode(io.BytesIO(data), storage.context(name))
        key = inner._normalize_name(name)
        client.put_object(Bucket=inner.bucket_name, Key=key, Body=stored.read())
        return str(key)

    with ThreadPoolExecutor(32) as pool:
        return list(pool.map(put, names))


def _verify(jobs: int) -> float:
    """Run ``layered_verify --jobs N`` over every object; return its seconds."""
    from django.core.management import call_command

    from layered_storage.management.commands import layered_verify

    out = io.StringIO()
    started = time.perf_counter()
    call_command(  # by instance: the benchmark settings install no app
        layered_verify.Command(),
        "--storage",
        ALIAS,
        "--jobs",
        str(jobs),
        stdout=out,
        stderr=io.StringIO(),
    )
    seconds = time.perf_counter() - started
    assert f"{OBJECTS} of {OBJECTS} files verified" in out.getvalue(), out.getvalue()
    return seconds


def _raw_gets(storage: Any, keys: list[str], threads: int) -> float:
    """Return the seconds plain boto3 takes to GET the tail of each object."""
    inner = storage.inner
    client = inner.connection.meta.client

    def get(key: str) -> None:
        response = client.get_object(
            Bucket=inner.bucket_name, Key=key, Range="bytes=-262144"
        )
        response["Body"].read()

    started = time.perf_counter()
    if threads == 1:
        for key in keys:
            get(key)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(get, keys))
    return time.perf_counter() - started


@contextmanager
def _delayed_requests(delay: float) -> Iterator[None]:
    """Delay every HTTP request botocore sends by ``delay`` seconds."""
    from botocore.httpsession import URLLib3Session

    original = URLLib3Session.send

    def send(self: Any, request: Any) -> Any:
        time.sleep(delay)  # waiting, as on a network: no CPU, no GIL
        return original(self, request)

    URLLib3Session.send = send  # type: ignore[method-assign]
    try:
        yield
    finally:
        URLLib3Session.send = original  # type: ignore[method-assign]


def run(log: Callable[[str], None]) -> dict[str, Any]:
    """Measure; return seconds per case and the speed-ups."""
    with _layered_s3() as storage:
        started = time.perf_counter()
        keys = _fill(storage, OBJECTS)
        log(f"  {OBJECTS} objects stored in {time.perf_counter() - started:.1f} s")
        seconds: dict[str, float] = {}
        # Interleaved, best of two: other work on the machine comes and goes.
        for _ in range(2):
            for case, measure in (
                ("raw GET, 1 thread", lambda: _raw_gets(storage, keys, 1)),
                (f"raw GET, {JOBS} threads", lambda: _raw_gets(storage, keys, JOBS)),
                ("verify --jobs 1", lambda: _verify(1)),
                (f"verify --jobs {JOBS}", lambda: _verify(JOBS)),
            ):
                seconds[case] = min(seconds.get(case, float("inf")), measure())
        with _delayed_requests(RTT):
            rtt = f"{RTT * 1000:g} ms RTT"
            seconds[f"verify --jobs 1, {rtt}"] = _verify(1)
            seconds[f"verify --jobs {JOBS}, {rtt}"] = _verify(JOBS)
        storage.inner.bucket.objects.filter(
            Prefix=storage.inner.location + "/"
        ).delete()
    for case, value in seconds.items():
        log(f"  {case}: {value:.2f} s, {OBJECTS / value:.0f} objects/s")
    loopback = seconds["verify --jobs 1"] / seconds[f"verify --jobs {JOBS}"]
    ceiling = seconds["raw GET, 1 thread"] / seconds[f"raw GET, {JOBS} threads"]
    delayed = (
        seconds[f"verify --jobs 1, {rtt}"] / seconds[f"verify --jobs {JOBS}, {rtt}"]
    )
    return {
        "objects": OBJECTS,
        "jobs": JOBS,
        "rtt_s": RTT,
        "seconds": seconds,
        "speedup_with_rtt": delayed,
        "speedup_loopback": loopback,
        "speedup_raw_boto3_loopback": ceiling,
        "share_of_ceiling": loopback / ceiling,
    }


def maintenance_checks(result: dict[str, Any] | None) -> list[Check]:
    """Return the target: the --jobs speed-up over a network's delay. (On loopback
    the speed-up is bounded by CPU, as plain boto3's is: reported, not a target.)"""
    if result is None:
        return []
    return [
        Check(
            f"layered_verify --jobs {JOBS} / --jobs 1, {OBJECTS} small objects, S3 "
            f"(SeaweedFS) + {RTT * 1000:g} ms RTT per request",
            result["speedup_with_rtt"],
            TARGET,
            note=f"[on loopback: {result['speedup_loopback']:.2f}; plain boto3 "
            f"threads there: {result['speedup_raw_boto3_loopback']:.2f}]",
        )
    ]


def report(result: dict[str, Any], emit: Callable[[str], None]) -> None:
    emit(
        f"\nMaintenance over {OBJECTS} small objects on S3 (layered_verify, "
        "seconds, objects/s):"
    )
    for case, seconds in result["seconds"].items():
        emit(f"  {case:<34} {seconds:7.2f} s {OBJECTS / seconds:7.0f}/s")
    emit(
        f"  --jobs {JOBS} / --jobs 1: {result['speedup_with_rtt']:.2f} with "
        f"{RTT * 1000:g} ms RTT, {result['speedup_loopback']:.2f} on loopback "
        f"(plain boto3 threads there: {result['speedup_raw_boto3_loopback']:.2f})"
    )


def main() -> int:
    import os

    if not env.s3_enabled():
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.s3server import ensure_s3_server

        os.environ.setdefault("S3_BUCKET", ensure_s3_server().bucket)
    return env.run_alone(
        "maintenance", lambda _workdir, _key, log: run(log), report, maintenance_checks
    )


if __name__ == "__main__":
    sys.exit(main())
