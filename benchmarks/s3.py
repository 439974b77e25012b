"""S3 cases, run only when ``AWS_ENDPOINT_URL_S3`` names a server (e.g. SeaweedFS).

Plain ``S3Storage`` saves and reads the bytes a stack stores (the network and
server limit for the same object), next to ``LayeredStorage`` over that S3Storage.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from benchmarks import MiB, env
from benchmarks.cases import Case, deleter, save_from, storage_cases

#: Stacks measured over S3, each also against plain S3Storage of its stored bytes.
S3_STACKS = ("zstd+aes-gcm", "aes-gcm")
S3_REPS = 5


def _ensure_bucket(s3: Any) -> None:
    client = s3.connection.meta.client
    try:
        client.head_bucket(Bucket=s3.bucket_name)
    except Exception:  # botocore's ClientError: 404, or 403 on some servers
        client.create_bucket(Bucket=s3.bucket_name)


def s3_cases(src: Path, dataset: str) -> list[Case]:
    """Return S3 cases: plain S3Storage of encoded bytes, and LayeredStorage over it."""
    from django.core.files.storage import storages

    s3, fs = storages["s3"], env.plain_fs()
    _ensure_bucket(s3)
    cases: list[Case] = []
    for stack in S3_STACKS:
        encoded = f"s3-source/{stack}-{dataset}.bin"

        def encode(stack: str = stack, encoded: str = encoded) -> None:
            deleter(fs, encoded)()
            save_from(env.layered(stack), encoded, src)

        plain = storage_cases(
            f"S3Storage ({stack} bytes)",
            "s3",
            s3,
            Path(fs.path(encoded)),
            dataset,
            s3.size,
        )
        plain[0].prepare = encode
        cases += plain
        cases += storage_cases(
            f"{stack} over S3", "s3", env.layered(stack, "s3"), src, dataset, s3.size
        )
    for case in cases:  # network round trips: fewer runs keep the quick run quick
        case.max_reps = S3_REPS
    return cases


#: The random-range probe: a file this large, read this many times, 1 MiB each.
RANGE_FILE_SIZE = 256 * MiB
RANGE_READS = 8


def range_reads(src: Path) -> dict[str, Any]:
    """Read random 1 MiB ranges of ``src`` stored through zstd+aes-gcm over S3.

    Each read opens the file anew, seeks and reads 1 MiB; the GetObject requests it
    sends (the opening one included) are counted through botocore's events, and
    its time is set against one plain ranged GET of 1 MiB of the stored object.
    """
    storage = env.layered("zstd+aes-gcm", "s3")
    client = storage.inner.connection.meta.client
    _ensure_bucket(storage.inner)
    name = save_from(storage, "s3-range/range.bin", src)
    sent: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        sent.append(params.get("Range", "whole object"))

    events = client.meta.events
    events.register("before-parameter-build.s3.GetObject", count)
    picker = random.Random(7)
    gets: list[int] = []
    layered_s: list[float] = []
    plain_s: list[float] = []
    stored = storage.inner.size(name)
    key = storage.inner._normalize_name(name)
    try:
        for _ in range(RANGE_READS):
            offset = picker.randrange(RANGE_FILE_SIZE - MiB)
            sent.clear()
            started = time.perf_counter()
            with storage.open(name) as opened:
                opened.seek(offset)
                assert len(opened.read(MiB)) == MiB
            layered_s.append(time.perf_counter() - started)
            gets.append(len(sent))
            at = picker.randrange(stored - MiB)
            started = time.perf_counter()
            body = client.get_object(
                Bucket=storage.inner.bucket_name,
                Key=key,
                Range=f"bytes={at}-{at + MiB - 1}",
            )["Body"]
            body.read()
            plain_s.append(time.perf_counter() - started)
    finally:
        events.unregister("before-parameter-build.s3.GetObject", count)
        storage.delete(name)
    return {
        "size": RANGE_FILE_SIZE,
        "reads": RANGE_READS,
        "gets_max": max(gets),
        "gets": gets,
        "layered_ms_median": 1000 * sorted(layered_s)[len(layered_s) // 2],
        "plain_get_ms_median": 1000 * sorted(plain_s)[len(plain_s) // 2],
    }
