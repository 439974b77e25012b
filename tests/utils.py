"""Helpers for tests: raw access to stored bytes, sizes on segment and frame edges."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import Storage

SEGMENT = 64 * 1024
FRAME = 1024 * 1024
SEGMENT_EDGES = [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 7]
FRAME_EDGES = [FRAME - 1, FRAME, FRAME + 1, 2 * FRAME + SEGMENT]


def stored_bytes(inner: Storage, name: str) -> bytes:
    """Return the bytes ``inner`` holds for ``name``."""
    with inner.open(name, "rb") as stored:
        data: bytes = stored.read()
    return data


def replace_stored(inner: Storage, name: str, data: bytes) -> None:
    """Overwrite what ``inner`` holds for ``name`` with ``data``."""
    inner.delete(name)
    saved = inner.save(name, ContentFile(data))
    assert saved == name


def tamper(inner: Storage, name: str, change: Callable[[bytearray], bytes]) -> None:
    """Rewrite the stored bytes of ``name`` through ``change``."""
    replace_stored(inner, name, change(bytearray(stored_bytes(inner, name))))


def sample(size: int, seed: int = 0) -> bytes:
    """Return ``size`` deterministic bytes, half compressible text, half random."""
    rng = random.Random(seed)
    words = [b"layered", b"storage", b"zstd", b"segment", b"frame", b"django", b" "]
    wanted = size - size // 2
    text = b"".join(rng.choice(words) for _ in range(size // 8 + 1))
    while len(text) < wanted:  # short words can fall short of the size
        text += text
    return text[:wanted] + rng.randbytes(size // 2)


def read_in_steps(stream: Any, step: int) -> bytes:
    """Return everything ``stream`` yields when read ``step`` bytes at a time."""
    out = io.BytesIO()
    while chunk := stream.read(step):
        out.write(chunk)
    return out.getvalue()
