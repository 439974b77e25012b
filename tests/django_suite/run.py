"""Run Django's file_storage tests against LayeredStorage (the subprocess side).

Usage::

    python -m tests.django_suite.run --suite-root DIR --layers zstd,aes-gcm \
        [--json RESULT.json] [-v 2] [TEST_LABEL ...]

``DIR`` holds the extracted ``file_storage`` package (see ``fetch``). While Django
sets up the app registry and the suite's modules are imported, the name
``django.core.files.storage.FileSystemStorage`` is ``LayeredFileSystemStorage``, so
every ``FileSystemStorage`` the tests name (including ``storage_class``, the
module-level storages of ``models.py`` and the classes derived from it) is a
LayeredStorage over a real FileSystemStorage. The name is restored before the tests
run, so settings-based storages (``STORAGES``) are Django's own. Django's
DiscoverRunner then runs the suite minus the exclusions; the counts go to ``--json``.
Exit status: 0 when every test that ran passed.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import os
import sys
import time
import unittest
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SUITE_PACKAGE = "file_storage"


@contextmanager
def substituted_file_system_storage(replacement: type) -> Iterator[None]:
    """Make ``django.core.files.storage.FileSystemStorage`` name ``replacement``."""
    import django.core.files.storage as storage_package

    original = storage_package.FileSystemStorage
    storage_package.FileSystemStorage = replacement  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        storage_package.FileSystemStorage = original  # type: ignore[misc]


def iter_tests(suite: unittest.TestSuite | unittest.TestCase) -> Iterator[Any]:
    """Yield the test cases of ``suite``, flattened."""
    if isinstance(suite, unittest.TestSuite):
        for item in suite:
            yield from iter_tests(item)
    else:
        yield suite


def suite_modules(suite_root: Path) -> list[str]:
    """Return the dotted names of the suite's modules (``file_storage.*``)."""
    package = suite_root / SUITE_PACKAGE
    return sorted(
        f"{SUITE_PACKAGE}.{path.stem}" if path.stem != "__init__" else SUITE_PACKAGE
        for path in package.glob("*.py")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite-root", type=Path, required=True)
    parser.add_argument("--layers", required=True, help="e.g. zstd,aes-gcm")
    parser.add_argument("--json", type=Path, help="write the counts here")
    parser.add_argument("-v", "--verbosity", type=int, default=2)
    parser.add_argument(
        "--no-exclusions",
        action="store_true",
        help="run the excluded tests too (to check that they still need excluding)",
    )
    parser.add_argument("labels", nargs="*", default=[SUITE_PACKAGE])
    args = parser.parse_args(argv)

    os.environ["LAYERED_SUITE_LAYERS"] = args.layers
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.django_suite.settings"
    sys.path.insert(0, str(args.suite_root.resolve()))

    import django
    from django.core.files.storage.filesystem import FileSystemStorage
    from django.test.runner import DiscoverRunner
    from django.test.utils import get_runner

    from tests.django_suite.exclusions import exclusions_for
    from tests.django_suite.storage import LayeredFileSystemStorage, configured_layers

    layers = configured_layers()
    exclusions = [] if args.no_exclusions else exclusions_for(layers)

    with substituted_file_system_storage(LayeredFileSystemStorage):
        django.setup()  # imports file_storage.models (module-level storages)
        for module in suite_modules(args.suite_root):
            importlib.import_module(module)

    # Guard: the suite really got the substitute (else it would test plain FS).
    tests_module: Any = sys.modules[f"{SUITE_PACKAGE}.tests"]
    models_module: Any = sys.modules[f"{SUITE_PACKAGE}.models"]
    if not (
        tests_module.FileSystemStorage is LayeredFileSystemStorage
        and isinstance(models_module.temp_storage, LayeredFileSystemStorage)
        and isinstance(models_module.temp_storage.inner, FileSystemStorage)
    ):
        raise SystemExit("The suite did not pick up LayeredFileSystemStorage.")

    from django.conf import settings

    runner_class = get_runner(settings)
    if not issubclass(runner_class, DiscoverRunner):
        raise SystemExit(f"TEST_RUNNER {runner_class} is not a DiscoverRunner.")

    excluded: list[dict[str, str]] = []
    run_by_module: dict[str, int] = {}
    matched_patterns: set[str] = set()
    outcome: dict[str, Any] = {}

    class LayeredSuiteRunner(runner_class):  # type: ignore[valid-type,misc]
        """Django's DiscoverRunner, minus the exclusions, keeping the result."""

        def build_suite(self, *a: Any, **kw: Any) -> unittest.TestSuite:
            suite = super().build_suite(*a, **kw)
            kept = []
            for test in iter_tests(suite):
                test_id = test.id()
                hit = next(
                    (e for e in exclusions if fnmatch.fnmatchcase(test_id, e.pattern)),
                    None,
                )
                if hit is None:
                    kept.append(test)
                    module = ".".join(test_id.split(".")[:2])
                    run_by_module[module] = run_by_module.get(module, 0) + 1
                else:
                    matched_patterns.add(hit.pattern)
                    excluded.append({"test": test_id, "reason": hit.reason})
            self.log(f"Excluded {len(excluded)} test(s); running {len(kept)}.")
            kept_suite: unittest.TestSuite = self.test_suite(kept)
            return kept_suite

        def run_suite(self, suite: unittest.TestSuite, **kw: Any) -> Any:
            result = super().run_suite(suite, **kw)
            outcome["result"] = result
            return result

    started = time.monotonic()
    runner = LayeredSuiteRunner(verbosity=args.verbosity, interactive=False)
    failures = runner.run_tests(args.labels)
    elapsed = time.monotonic() - started

    result = outcome.get("result")
    unmatched = sorted({e.pattern for e in exclusions} - matched_patterns)
    summary = {
        "django_version": django.get_version(),
        "layers": layers,
        "labels": args.labels,
        "tests_run": result.testsRun if result else 0,
        "failures": len(result.failures) if result else 0,
        "errors": len(result.errors) if result else 0,
        "skipped": len(result.skipped) if result else 0,
        "expected_failures": len(result.expectedFailures) if result else 0,
        "unexpected_successes": len(result.unexpectedSuccesses) if result else 0,
        "successful": bool(result and result.wasSuccessful()),
        "selected_by_module": dict(sorted(run_by_module.items())),
        "excluded": excluded,
        "unmatched_exclusions": unmatched,
        "layered": dict(LayeredFileSystemStorage.stats),
        "seconds": round(elapsed, 2),
    }
    print("\nLayered storage suite summary:")
    print(json.dumps({k: v for k, v in summary.items() if k != "excluded"}, indent=2))
    for item in excluded:
        print(f"  excluded {item['test']}: {item['reason']}")
    for pattern in unmatched:
        print(f"  note: exclusion {pattern!r} matched no test in this Django version")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if failures == 0 and summary["successful"] else 1


if __name__ == "__main__":
    sys.exit(main())
