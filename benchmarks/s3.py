"""S3 cases, run only when ``AWS_ENDPOINT_URL_S3`` names a server (e.g. SeaweedFS).

Plain ``S3Storage`` saves and reads the bytes a stack stores (the network and
server limit for the same object), next to ``LayeredStorage`` over that S3Storage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import env
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
