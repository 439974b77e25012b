"""Measure peak RSS growth of one save, write or read, in a fresh process.

Run as ``python -m tests.memory_probe ACTION SIZE_MIB INNER_ALIAS ROOT LAYERS`` with
ACTION ``save``, ``write`` (through ``open(name, "wb")``) or ``read``; prints the
growth of ``VmHWM`` in bytes. A fresh process is needed because Linux carries a
parent's peak across fork+exec into ``ru_maxrss``.
"""

from __future__ import annotations

import io
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import django

CHUNK = 1024 * 1024


def peak_rss() -> int:
    """Return this process's peak resident set size in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class GeneratedStream(io.RawIOBase):
    """``size`` bytes, each MiB half text and half random, made as they are read."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._rng = random.Random(7)
        words = b"layered storage keeps files compressed and encrypted at rest "
        self._text = (words * (CHUNK // len(words) + 1))[: CHUNK // 2]
        self._block = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._block:
            self._block = memoryview(self._text + self._rng.randbytes(CHUNK // 2))
        count = min(len(buffer), self._left, len(self._block))
        buffer[:count] = self._block[:count]
        self._block = self._block[count:]
        self._left -= count
        return count


def generated_file(size: int, name: str) -> Any:
    """Return a Django ``File`` over a ``GeneratedStream`` of ``size`` bytes."""
    from django.core.files.base import File

    return File(GeneratedStream(size), name)  # type: ignore[arg-type]


def main(action: str, size_mib: int, inner: str, root: str, layers: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    from django.conf import settings
    from django.test.utils import override_settings

    from layered_storage import LayeredStorage

    config: dict[str, Any]
    if inner == "filesystem":
        config = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": root},
        }
    else:
        from tests.conftest import inner_config

        config = inner_config(inner, Path(root))
        config["OPTIONS"]["location"] = os.path.basename(root)  # shared by both runs
    # override_settings tells Django's storage handler to forget cached backends.
    override_settings(STORAGES={**settings.STORAGES, "probe": config}).enable()
    storage = LayeredStorage(inner="probe", layers=layers.split(","))
    storage.pipeline.keyring()
    storage.exists("warm-up")  # build the inner storage and its client first
    size = size_mib * CHUNK
    before = peak_rss()
    if action == "save":
        name = storage.save("probe.bin", generated_file(size, "probe.bin"))
        assert name == "probe.bin", name
    elif action == "write":
        source = GeneratedStream(size)
        buffer = bytearray(CHUNK)
        with storage.open("probe.bin", "wb") as writing:
            while count := source.readinto(buffer):
                writing.write(memoryview(buffer)[:count])
    else:
        total = 0
        with storage.open("probe.bin") as opened:
            while chunk := opened.read(CHUNK):
                total += len(chunk)
        assert total == size, total
    print(json.dumps({"growth": peak_rss() - before}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
