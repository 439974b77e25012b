"""Constant memory: file size never shows up in memory use, on save or on open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from layered_storage import LayeredStorage
from tests.memory_probe import CHUNK, generated_file

MIB = 1024 * 1024


def python_peaks(storage: LayeredStorage, size: int) -> tuple[int, int]:
    """Return the peak Python allocations of saving and of reading ``size`` bytes."""
    tracemalloc.start()
    try:
        name = storage.save("flat.bin", generated_file(size, "flat.bin"))
        _, save_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        total = 0
        with storage.open(name) as opened:
            while chunk := opened.read(CHUNK):
                total += len(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    storage.delete(name)
    return save_peak, read_peak


def test_python_allocations_do_not_grow_with_the_file(
    fs_storage: LayeredStorage, settings: Any
) -> None:
    settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, "WORKERS": 2}
    small = python_peaks(fs_storage, 16 * MIB)
    large = python_peaks(fs_storage, 64 * MIB)
    for before, after in zip(small, large, strict=True):
        # 48 MiB more file; what differs is which batches happen to be in flight.
        assert after - before < 4 * MIB, (small, large)
    # Each layer keeps at most 2 x workers batches of 1 MiB in flight, in and out.
    assert max(large) < 24 * MIB, large


def probe(action: str, size_mib: int, inner: str, root: Path, layers: str) -> int:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.memory_probe",
            action,
            str(size_mib),
            inner,
            str(root),
            layers,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert done.returncode == 0, done.stderr
    growth: int = json.loads(done.stdout.strip().splitlines()[-1])["growth"]
    return growth


@pytest.mark.slow
@pytest.mark.parametrize("inner", ["filesystem", "s3"])
def test_512_mib_save_and_read_grow_peak_rss_under_limit(
    tmp_path: Path, inner: str, request: Any
) -> None:
    if inner == "s3":
        from tests.conftest import s3_server

        s3_server()
    limit = 64 * MIB if inner == "filesystem" else 96 * MIB
    layers = "zstd,aes-gcm"
    save = probe("save", 512, inner, tmp_path, layers)
    read = probe("read", 512, inner, tmp_path, layers)
    assert save < limit, f"save grew peak RSS by {save / MIB:.1f} MiB"
    assert read < limit, f"read grew peak RSS by {read / MIB:.1f} MiB"


@pytest.mark.slow
@pytest.mark.parametrize("inner", ["filesystem", "s3"])
def test_1_gib_written_through_open_wb_grows_peak_rss_under_limit(
    tmp_path: Path, inner: str
) -> None:
    if inner == "s3":
        from tests.conftest import s3_server

        s3_server()
    limit = 64 * MIB if inner == "filesystem" else 96 * MIB
    write = probe("write", 1024, inner, tmp_path, "zstd,aes-gcm")
    assert write < limit, f"writing grew peak RSS by {write / MIB:.1f} MiB"
