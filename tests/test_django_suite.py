"""Django's own storage-related test suites, run against LayeredStorage.

Test packages from the sdist of exactly the installed Django version (downloaded
once with ``pip download`` and cached under the git-ignored ``.cache/``) run in a
subprocess under Django's own test runner (see ``tests/django_suite``), once per
layer stack:

- ``file_storage``, with every ``FileSystemStorage`` it builds replaced by a
  LayeredStorage over a real FileSystemStorage;
- ``file_uploads``, ``model_fields`` (test_filefield, test_imagefield),
  ``admin_widgets``, ``model_forms`` (FileAndImageFieldTests) and ``test_utils``
  (the STORAGES and media settings overrides), with LayeredStorage as
  ``STORAGES["default"]`` over a FileSystemStorage, and the storages their models
  build themselves layered too.

The tests that cannot apply (they reach the stored file through ``path()`` or the
OS, or assert FileSystemStorage's class path or its own way of working) are listed
with their reasons in ``tests/django_suite/exclusions.py``; everything else must
pass, at least a floor of tests must pass in each suite (a run that skipped or
selected next to nothing fails), and each suite must have reached LayeredStorage.

When the package index cannot be reached the tests are skipped, unless the ``CI``
environment variable is set: then they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django
import pytest

from tests.django_suite.exclusions import EXCLUSIONS, KINDS
from tests.django_suite.fetch import DownloadError, prepare_suite
from tests.django_suite.suites import RUNS

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / ".cache" / "django-suite"

STACKS = [["zstd", "aes-gcm"], ["zstd"]]


def _for_this_django(floors: dict[tuple[int, int], int]) -> int:
    """Return the floor of the newest release in ``floors`` not after this one."""
    version = django.VERSION[:2]
    return floors[max(release for release in floors if release <= version)]


#: Tests that must pass per suite. Measured on Django 4.2 / 5.2 / 6.0 and 6.1:
#: file_storage 143 of 182 / 166 of 212 / 148 of 186; file_uploads 36/38/38,
#: model_fields 56/61/62, admin_widgets 74/77/78 (its Selenium tests skip),
#: model_forms 11 (one fewer without Pillow), test_utils 5. A run below these did
#: not run the suite, whatever it says.
MIN_PASSED = {
    "file_storage": _for_this_django({(4, 2): 130, (5, 0): 155, (6, 0): 140}),
    "file_uploads": 33,
    "model_fields": 50,
    "admin_widgets": 70,
    "model_forms": 11,
    "test_utils": 5,
}
#: What each suite must at least have done through LayeredStorage (the lowest
#: count of any version and stack, roughly halved; see storage.COUNTED).
MIN_LAYERED = {
    "file_storage": {"saves": 50, "opens": 10, "writes": 2, "attributes": 20},
    "file_uploads": {"saves": 3},
    "model_fields": {"saves": 20, "opens": 20},
    "admin_widgets": {"urls": 7},
    "model_forms": {"saves": 6, "opens": 1},
    "test_utils": {"attributes": 4},
}

SUBPROCESS_TIMEOUT = 900

CASES = [
    pytest.param(run, suite.package, layers, id=f"{suite.package}-{'+'.join(layers)}")
    for run in RUNS
    for suite in RUNS[run].suites
    for layers in STACKS
]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def suite_root() -> Path:
    """Return the folder holding Django's test packages."""
    try:
        return prepare_suite(CACHE_DIR)
    except DownloadError as error:
        if error.unreachable and not in_ci():
            pytest.skip(
                "Django's tests could not be downloaded: the package index is "
                f"unreachable (set CI=1 to make this a failure).\n{error}"
            )
        pytest.fail(f"Could not download Django's tests:\n{error}")


#: ``(summary, output)`` of one run, or ``(None, why it gave no summary)``.
Outcome = tuple[dict[str, Any] | None, str]
RunSuites = Callable[[str, list[str]], tuple[dict[str, Any], str]]


@pytest.fixture(scope="module")
def run_suites(suite_root: Path, tmp_path_factory: pytest.TempPathFactory) -> RunSuites:
    """Return ``(run, layers) -> (summary, output)``, running each pair once (a
    run that gave no summary fails each of its suites, without running again)."""
    done: dict[tuple[str, str], Outcome] = {}

    def run_once(run: str, layers: list[str]) -> tuple[dict[str, Any], str]:
        key = (run, ",".join(layers))
        if key not in done:
            done[key] = _run_subprocess(suite_root, run, layers, tmp_path_factory)
        summary, output = done[key]
        if summary is None:
            pytest.fail(output, pytrace=False)
        return summary, output

    return run_once


def _run_subprocess(
    suite_root: Path, run: str, layers: list[str], tmp: pytest.TempPathFactory
) -> Outcome:
    result_file = tmp.mktemp(f"{run}-{'-'.join(layers)}") / "result.json"
    command = [
        sys.executable,
        "-m",
        "tests.django_suite.run",
        "--suite-root",
        str(suite_root),
        "--run",
        run,
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
    for name in ("LAYERED_SUITE_LAYERS", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
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
        return (
            None,
            f"Django's {run} run did not finish in {SUBPROCESS_TIMEOUT}s:\n{output}",
        )
    if not result_file.is_file():
        return None, (
            f"Django's {run} run on {layers} ended without a result (exit "
            f"{completed.returncode}):\n{completed.stdout}"
        )
    summary: dict[str, Any] = json.loads(result_file.read_text())
    return summary, completed.stdout


@pytest.mark.parametrize(("run", "package", "layers"), CASES)
def test_django_suite_passes(
    run_suites: RunSuites, run: str, package: str, layers: list[str]
) -> None:
    summary, output = run_suites(run, layers)
    suite = summary["suites"][package]
    problems = []
    broken = sorted(
        test
        for test, outcome in summary["outcomes"].items()
        if outcome in ("failed", "error") and test.split(".", 1)[0] == package
    )
    if broken:
        problems.append(f"{len(broken)} test(s) failed: {', '.join(broken)}")
    if suite["passed"] < MIN_PASSED[package]:
        problems.append(
            f"only {suite['passed']} tests passed (< {MIN_PASSED[package]}); "
            f"{suite['skipped']} skipped"
        )
    for kind, floor in MIN_LAYERED[package].items():
        if suite["layered"][kind] < floor:
            problems.append(
                f"LayeredStorage was barely exercised: {suite['layered']} "
                f"({kind} < {floor})"
            )
    if summary["layers"] != layers:
        problems.append(f"ran the stack {summary['layers']}, not {layers}")
    stray = sorted(
        test
        for test, outcome in summary["outcomes"].items()
        if outcome in ("failed", "error")
        and test.split(".", 1)[0] not in RUNS[run].packages
    )
    if stray:
        problems.append(f"errors outside the suites: {', '.join(stray)}")
    if problems:
        pytest.fail("; ".join(problems) + f"\n{output}", pytrace=False)


def test_every_exclusion_says_its_kind_and_reason() -> None:
    for exclusion in EXCLUSIONS:
        assert exclusion.kind in KINDS, exclusion
        assert exclusion.reason.strip(), exclusion
        assert exclusion.pattern.split(".", 1)[0] in {
            suite.package for run in RUNS.values() for suite in run.suites
        }, exclusion
