"""A real ``layered_rotate`` killed with SIGKILL again and again loses no file.

The command runs in a child process over 200 files; the child is killed at a
random moment after it starts rotating, then run again, until a run completes.
After every kill each file must read back exactly, with the old key or the new
one, and nothing half-written may show.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile

from layered_storage import LayeredStorage
from layered_storage.keys import generate_key
from layered_storage.maintenance import inspect
from tests.conftest import inner_config
from tests.utils import sample

ROOT = Path(__file__).resolve().parent.parent
FILES = 200
#: The child prints this as it starts rotating its first file.
READY = "rotating"

# The command, with a hook that says when the first file starts being rotated (after
# the listing and inspection), so that the kills land among the rewrites.
CHILD = f"""
import django
from django.core.management import call_command
django.setup()
from layered_storage.management.commands import layered_rotate
rotate = layered_rotate.rotate
def announced(storage, name):
    global announced
    print({READY!r}, flush=True)
    layered_rotate.rotate = rotate
    rotate(storage, name)
layered_rotate.rotate = announced
call_command("layered_rotate", "--storage", "vault")
"""


def vault_settings(inner: dict[str, Any]) -> dict[str, Any]:
    """Return the STORAGES entries of a layered storage 'vault' over ``inner``."""
    return {
        "vault-inner": inner,
        "vault": {
            "BACKEND": "layered_storage.LayeredStorage",
            "OPTIONS": {"inner": "vault-inner", "layers": ["zstd", "aes-gcm"]},
        },
    }


def write_child_settings(
    folder: Path, storages: dict[str, Any], keys: list[str]
) -> None:
    (folder / "kill_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        f"STORAGES = {{**STORAGES, **{storages!r}}}  # noqa: F405\n"
        f"LAYERED_STORAGE = {{'KEYS': {keys!r}}}\n"
    )


def start_rotation(folder: Path) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kill_settings",
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]),
    }
    return subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environment,
        cwd=ROOT,
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["filesystem", "s3"])
def test_sigkill_during_rotation_loses_nothing(
    settings: Any, tmp_path: Path, kind: str
) -> None:
    old_key, new_key = generate_key(), generate_key()
    inner = inner_config(kind, tmp_path)
    storages = vault_settings(inner)
    settings.STORAGES = {**settings.STORAGES, **storages}
    settings.LAYERED_STORAGE = {"KEYS": [old_key]}
    writer = LayeredStorage(inner="vault-inner", layers=["zstd", "aes-gcm"])
    rng = random.Random(20261202)
    # Mostly small files, some of several frames, so kills land inside writes too.
    sizes = [rng.choice([100, 20_000, 300_000, 1_200_000]) for _ in range(FILES)]
    originals = {
        writer.save(f"f/{i:03}.bin", ContentFile(sample(size, i))): sample(size, i)
        for i, size in enumerate(sizes)
    }
    write_child_settings(tmp_path, storages, [new_key, old_key])
    settings.LAYERED_STORAGE = {"KEYS": [new_key, old_key]}
    reader = LayeredStorage(inner="vault-inner", layers=["zstd", "aes-gcm"])
    new_label = reader.pipeline.keyring().primary.label

    kills = 0
    for run in range(40):
        with start_rotation(tmp_path) as child:
            assert child.stdout is not None
            if child.stdout.readline().strip() == READY:
                # Later runs wait longer, so that the rotation also completes.
                time.sleep(rng.uniform(0, 0.2 * 1.3**run))
                if child.poll() is None:
                    child.send_signal(signal.SIGKILL)
                    kills += 1
            code = child.wait(timeout=120)
        # Every file, every time: complete, with the old key or the new one.
        assert sorted(reader.listdir("f")[1]) == sorted(
            name.split("/")[1] for name in originals
        )
        for name, data in originals.items():
            with reader.open(name) as opened:
                assert opened.read() == data, name
        if code == 0:
            break
    else:
        pytest.fail("the rotation never completed between the kills")
    assert kills >= 3, "the kills should land while files are being rotated"
    assert {inspect(reader, name).key_id for name in originals} == {new_label}
