"""Run Django's own storage-related tests against LayeredStorage (the subprocess).

Usage::

    python -m tests.django_suite.run --suite-root DIR --run default_storage \
        --layers zstd,aes-gcm [--json RESULT.json] [-v 2] [TEST_LABEL ...]

``DIR`` holds the extracted test packages (see ``fetch``); ``--run`` names one of
``suites.RUNS``, which gives the settings and the labels. The working folder is a
fresh temporary one (``MEDIA_ROOT`` is ``""`` there), removed at the end.

While Django sets up the app registry and the suites' modules are imported, the
names ``django.core.files.storage.FileSystemStorage`` and
``django.core.files.storage.filesystem.FileSystemStorage`` are
``LayeredFileSystemStorage``, so every ``FileSystemStorage`` the tests name
(``storage_class``, the module-level storages of their ``models.py``, the classes
derived from it) is a LayeredStorage over a real FileSystemStorage. The names are
restored before the tests run, so settings-based storages (``STORAGES``) are built
from the settings: Django's own, or a LayeredStorage where the settings say so.
Django's DiscoverRunner then runs the labels minus the exclusions; the outcome of
every test and how often each suite reached LayeredStorage go to ``--json``.
Exit status: 0 when every test that ran passed.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import unittest
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.django_suite.suites import RUNS, Run, suite_of

#: Django modules that bind FileSystemStorage at import time: imported before the
#: substitution, so that static files stay plain files.
_IMPORT_FIRST = (
    "django.contrib.staticfiles.finders",
    "django.contrib.staticfiles.storage",
)

_HOLDER_ID = re.compile(r"\((?P<id>[\w.]+)\)$")


@contextmanager
def substituted_file_system_storage(replacement: type) -> Iterator[None]:
    """Make Django's two public names of FileSystemStorage name ``replacement``."""
    import django.core.files.storage as storage_package
    import django.core.files.storage.filesystem as filesystem_module

    modules: list[Any] = [storage_package, filesystem_module]
    originals = [module.FileSystemStorage for module in modules]
    for module in modules:
        module.FileSystemStorage = replacement
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            module.FileSystemStorage = original


def iter_tests(suite: unittest.TestSuite | unittest.TestCase) -> Iterator[Any]:
    """Yield the test cases of ``suite``, flattened."""
    if isinstance(suite, unittest.TestSuite):
        for item in suite:
            yield from iter_tests(item)
    else:
        yield suite


def package_modules(suite_root: Path, package: str) -> list[str]:
    """Return the dotted names of the modules of one test package."""
    return sorted(
        f"{package}.{path.stem}" if path.stem != "__init__" else package
        for path in (suite_root / package).glob("*.py")
    )


def make_warnings_errors() -> None:
    """Make the warnings errors that Django's runtests.py makes errors (its suite
    asserts some deprecation warnings as raised exceptions)."""
    import warnings

    from django.utils import deprecation

    warnings.simplefilter("error", deprecation.RemovedInNextVersionWarning)
    warnings.simplefilter("error", deprecation.RemovedAfterNextVersionWarning)
    warnings.simplefilter("error", ResourceWarning)
    warnings.simplefilter("error", RuntimeWarning)


def check_substitution(run: Run, substitute: type, modules: list[str]) -> None:
    """Stop unless the suites got ``substitute`` and nothing else did.

    Raises:
        SystemExit: a suite module kept the real FileSystemStorage (it would test
            plain files), or a module outside the suites got the substitute (static
            files would be layered).
    """
    from django.core.files.storage.filesystem import FileSystemStorage
    from django.utils.functional import LazyObject

    from layered_storage import LayeredStorage

    own = tuple(run.packages)
    problems = [
        f"{package} has no modules"
        for package in own
        if not any(module.split(".", 1)[0] == package for module in modules)
    ]
    bound = 0
    for name, module in list(sys.modules.items()):
        inside = name.split(".", 1)[0] in own
        value = getattr(module, "FileSystemStorage", None)
        if inside and value is not None:
            bound += 1
            if value is not substitute:
                problems.append(f"{name}.FileSystemStorage is the real class")
        elif value is substitute and not name.startswith("tests.django_suite"):
            problems.append(f"{name} got the substitute")
        if not inside:
            continue
        for attribute, obj in list(vars(module).items()):
            # Lazy storages (default_storage, staticfiles_storage) are Django's.
            if isinstance(obj, LazyObject) or not isinstance(obj, FileSystemStorage):
                continue
            if not isinstance(obj, LayeredStorage):
                problems.append(f"{name}.{attribute} is a plain FileSystemStorage")
    subclass: type
    for subclass in substitute.__subclasses__():
        if subclass.__module__.split(".", 1)[0] not in own:
            problems.append(f"{subclass.__module__}.{subclass.__name__} subclasses it")
    if bound == 0:
        problems.append("no suite module names FileSystemStorage")
    if problems:
        raise SystemExit(
            "The suites did not pick up LayeredFileSystemStorage as intended: "
            + "; ".join(problems)
        )


def check_default_storage(run: Run) -> None:
    """Stop unless ``STORAGES["default"]`` is what the run says it is.

    Raises:
        SystemExit: the settings' default storage is not a LayeredStorage over a
            FileSystemStorage, where the run's settings make it one.
    """
    from django.conf import settings
    from django.core.files.storage import FileSystemStorage, storages

    from layered_storage import LayeredStorage

    configured: Any = settings.STORAGES
    backend = configured["default"]["BACKEND"]
    if backend != "layered_storage.LayeredStorage":
        return
    storage = storages["default"]
    if type(storage) is not LayeredStorage or not isinstance(
        storage.inner, FileSystemStorage
    ):
        raise SystemExit(f"STORAGES['default'] built {storage!r}, not a layered FS.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite-root", type=Path, required=True)
    parser.add_argument("--run", choices=sorted(RUNS), default="file_storage")
    parser.add_argument("--layers", required=True, help="e.g. zstd,aes-gcm")
    parser.add_argument("--json", type=Path, help="write the outcomes here")
    parser.add_argument("-v", "--verbosity", type=int, default=2)
    parser.add_argument(
        "--no-exclusions",
        action="store_true",
        help="run the excluded tests too (to check that they still need excluding)",
    )
    parser.add_argument("labels", nargs="*")
    args = parser.parse_args(argv)
    run = RUNS[args.run]
    labels = args.labels or run.labels
    args.suite_root = args.suite_root.resolve()  # before the working folder moves
    json_path = args.json.resolve() if args.json else None

    os.environ["LAYERED_SUITE_LAYERS"] = args.layers
    os.environ["DJANGO_SETTINGS_MODULE"] = run.settings
    sys.path.insert(0, str(args.suite_root))
    workdir = tempfile.mkdtemp(prefix="layered-django-suite-")
    os.chdir(workdir)
    try:
        summary = run_suites(run, labels, args)
    finally:
        os.chdir(tempfile.gettempdir())
        shutil.rmtree(workdir, ignore_errors=True)
    if json_path:
        json_path.write_text(json.dumps(summary, indent=2))
    return 0 if summary["successful"] else 1


def run_suites(run: Run, labels: list[str], args: argparse.Namespace) -> Any:
    """Run ``labels`` under ``run``'s settings; return the summary."""
    import django
    from django.test.runner import DiscoverRunner
    from django.test.utils import get_runner

    from tests.django_suite.exclusions import exclusions_for
    from tests.django_suite.storage import (
        LayeredFileSystemStorage,
        configured_layers,
        count_layered_calls,
    )

    layers = configured_layers()
    exclusions = [] if args.no_exclusions else exclusions_for(run.packages)
    make_warnings_errors()

    for module in _IMPORT_FIRST:
        importlib.import_module(module)
    modules = [
        module
        for package in run.packages
        for module in package_modules(args.suite_root, package)
    ]
    with substituted_file_system_storage(LayeredFileSystemStorage):
        django.setup()  # imports the suites' models (module-level storages)
        for module in modules:
            importlib.import_module(module)
    check_substitution(run, LayeredFileSystemStorage, modules)
    check_default_storage(run)

    from django.conf import settings

    runner_class = get_runner(settings)
    if not issubclass(runner_class, DiscoverRunner):
        raise SystemExit(f"TEST_RUNNER {runner_class} is not a DiscoverRunner.")

    excluded: list[dict[str, str]] = []
    selected: dict[str, int] = {}
    matched_patterns: set[str] = set()
    outcomes: dict[str, str] = {}
    current = {"suite": "setup"}
    kept_result: dict[str, Any] = {}

    class LayeredSuiteRunner(runner_class):  # type: ignore[valid-type,misc]
        """Django's DiscoverRunner, minus the exclusions, recording outcomes."""

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
                    selected[suite_of(test_id)] = selected.get(suite_of(test_id), 0) + 1
                else:
                    matched_patterns.add(hit.pattern)
                    excluded.append(
                        {"test": test_id, "kind": hit.kind, "reason": hit.reason}
                    )
            self.log(f"Excluded {len(excluded)} test(s); running {len(kept)}.")
            kept_suite: unittest.TestSuite = self.test_suite(kept)
            return kept_suite

        def get_resultclass(self) -> Any:
            return _recording_result(super().get_resultclass(), outcomes, current)

        def run_suite(self, suite: unittest.TestSuite, **kw: Any) -> Any:
            result = super().run_suite(suite, **kw)
            kept_result["result"] = result
            return result

    started = time.monotonic()
    runner = LayeredSuiteRunner(verbosity=args.verbosity, interactive=False)
    with count_layered_calls(lambda: current["suite"]) as counts:
        failures = runner.run_tests(labels)
    elapsed = time.monotonic() - started

    result = kept_result.get("result")
    unmatched = sorted({e.pattern for e in exclusions} - matched_patterns)
    suites = {}
    for package in run.packages:
        mine = {t: o for t, o in outcomes.items() if suite_of(t) == package}
        tally = {
            kind: sum(1 for o in mine.values() if o == kind)
            for kind in ("passed", "skipped", "failed", "error", "expected_failure")
        }
        suites[package] = {
            "selected": selected.get(package, 0),
            "excluded": sum(1 for e in excluded if suite_of(e["test"]) == package),
            **tally,
            "layered": dict(counts.get(package, {"saves": 0, "opens": 0, "writes": 0})),
        }
    summary = {
        "django_version": django.get_version(),
        "run": args.run,
        "layers": layers,
        "labels": labels,
        "tests_run": result.testsRun if result else 0,
        "failures": len(result.failures) if result else 0,
        "errors": len(result.errors) if result else 0,
        "successful": bool(result and result.wasSuccessful() and failures == 0),
        "suites": suites,
        "outcomes": dict(sorted(outcomes.items())),
        "excluded": excluded,
        "unmatched_exclusions": unmatched,
        "seconds": round(elapsed, 2),
    }
    print("\nLayered storage suite summary:")
    print(
        json.dumps(
            {k: v for k, v in summary.items() if k not in ("excluded", "outcomes")},
            indent=2,
        )
    )
    for item in excluded:
        print(f"  excluded {item['test']} ({item['kind']}): {item['reason']}")
    for pattern in unmatched:
        print(f"  note: exclusion {pattern!r} matched no test in this Django version")
    return summary


def _recording_result(
    base: type | None, outcomes: dict[str, str], current: dict[str, str]
) -> type:
    """Return a result class over ``base`` that writes each test's outcome into
    ``outcomes`` and its suite into ``current`` while it runs."""
    parent: Any = base or unittest.TextTestResult

    def test_id(test: Any) -> str:
        # Errors in setUpClass come on a holder whose id is "setUpClass (a.b.C)".
        match = _HOLDER_ID.search(test.id())
        return match.group("id") if match and " " in test.id() else str(test.id())

    class RecordingResult(parent):  # type: ignore[misc]
        def startTest(self, test: Any) -> None:
            current["suite"] = suite_of(test_id(test))
            super().startTest(test)

        def addSuccess(self, test: Any) -> None:
            outcomes.setdefault(test_id(test), "passed")
            super().addSuccess(test)

        def addFailure(self, test: Any, err: Any) -> None:
            outcomes[test_id(test)] = "failed"
            super().addFailure(test, err)

        def addError(self, test: Any, err: Any) -> None:
            outcomes[test_id(test)] = "error"
            super().addError(test, err)

        def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
            if err is not None:
                failed = issubclass(err[0], test.failureException)
                outcomes[test_id(test)] = "failed" if failed else "error"
            super().addSubTest(test, subtest, err)

        def addSkip(self, test: Any, reason: str) -> None:
            outcomes.setdefault(test_id(test), "skipped")
            super().addSkip(test, reason)

        def addExpectedFailure(self, test: Any, err: Any) -> None:
            outcomes[test_id(test)] = "expected_failure"
            super().addExpectedFailure(test, err)

        def addUnexpectedSuccess(self, test: Any) -> None:
            outcomes[test_id(test)] = "failed"
            super().addUnexpectedSuccess(test)

    return RecordingResult


if __name__ == "__main__":
    sys.exit(main())
