"""Django's own file-storage test suite, run against LayeredStorage.

Django's ``tests/file_storage`` package, from the sdist of exactly the installed
Django version (downloaded once with ``pip download`` and cached under the
git-ignored ``.cache/``), runs in a subprocess under Django's own test runner with
every ``FileSystemStorage`` it builds replaced by a LayeredStorage over a real
FileSystemStorage (see ``tests/django_suite``), once per layer stack. The few tests
that cannot apply (they call ``path()``, read the stored bytes, open files for
writing, ...) are listed with their reasons in ``tests/django_suite/exclusions.py``;
everything else must pass.

When the package index cannot be reached the test is skipped, unless the ``CI``
environment variable is set: then it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import django
import pytest

from tests.django_suite.fetch import DownloadError, prepare_suite

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / ".cache" / "django-suite"

STACKS = [["zstd", "aes-gcm"], ["zstd"]]

#: Django 5.2's suite has 212 tests, at most 47 excluded (165 run, 137 layered
#: saves, 32 opens); Django 4.2's is smaller (123 run, 92 saves, 19 opens). A run
#: below these floors did not run the suite (or did not reach LayeredStorage),
#: whatever it says.
if django.VERSION >= (5, 0):
    MIN_TESTS_RUN, MIN_LAYERED_SAVES, MIN_LAYERED_OPENS = 150, 100, 20
else:
    MIN_TESTS_RUN, MIN_LAYERED_SAVES, MIN_LAYERED_OPENS = 100, 75, 15

SUBPROCESS_TIMEOUT = 900


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def suite_root() -> Path:
    """Return the folder holding Django's ``file_storage`` test package."""
    try:
        return prepare_suite(CACHE_DIR)
    except DownloadError as error:
        if error.unreachable and not in_ci():
            pytest.skip(
                "Django's file_storage tests could not be downloaded: the package "
                f"index is unreachable (set CI=1 to make this a failure).\n{error}"
            )
        pytest.fail(f"Could not download Django's file_storage tests:\n{error}")


@pytest.mark.parametrize("layers", STACKS, ids=["+".join(s) for s in STACKS])
def test_django_file_storage_suite(
    suite_root: Path, layers: list[str], tmp_path: Path
) -> None:
    result_file = tmp_path / "result.json"
    command = [
        sys.executable,
        "-m",
        "tests.django_suite.run",
        "--suite-root",
        str(suite_root),
        "--layers",
        ",".join(layers),
        "--json",
        str(result_file),
        "--verbosity",
        "2",
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.pop("LAYERED_SUITE_LAYERS", None)
    try:
        completed = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        output = error.output or ""
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
        pytest.fail(
            f"Django's suite did not finish in {SUBPROCESS_TIMEOUT}s:\n{output}"
        )
    output = completed.stdout

    if completed.returncode != 0 or not result_file.is_file():
        pytest.fail(
            f"Django's file_storage suite failed on {layers} (exit "
            f"{completed.returncode}):\n{output}",
            pytrace=False,
        )
    summary = json.loads(result_file.read_text())
    problems = []
    if not summary["successful"] or summary["failures"] or summary["errors"]:
        problems.append("the run was not successful")
    if summary["tests_run"] < MIN_TESTS_RUN:
        problems.append(f"only {summary['tests_run']} tests ran (< {MIN_TESTS_RUN})")
    layered = summary["layered"]
    if layered["saves"] < MIN_LAYERED_SAVES or layered["opens"] < MIN_LAYERED_OPENS:
        problems.append(f"LayeredStorage was barely exercised: {layered}")
    if summary["layers"] != layers:
        problems.append(f"ran the stack {summary['layers']}, not {layers}")
    if problems:
        pytest.fail("; ".join(problems) + f"\n{output}", pytrace=False)
