"""The README's first command: the demo stores real files and refuses a tampered one."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_round_trips_real_files_and_refuses_a_flipped_bit() -> None:
    # A fresh interpreter: the demo configures Django itself, with no settings module.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-m", "layered_storage.demo", "--megabytes", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "one flipped bit is refused: SegmentAuthenticationError" in done.stdout
    assert "all files read back identical." in done.stdout
