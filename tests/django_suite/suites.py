"""Which of Django's test packages run, in which settings, selected by which labels.

A *run* is one subprocess under one settings module; it runs one or more *suites*
(a Django test package, or the part of it the labels select). ``file_storage`` runs
alone: its StorageHandler tests expect Django's default ``STORAGES``, and every
storage it needs it builds itself. The others run together with LayeredStorage as
``STORAGES["default"]`` over a FileSystemStorage in a temporary folder; the
storages their models build themselves are made layered too (see ``storage``).
"""

from __future__ import annotations

from typing import NamedTuple


class Suite(NamedTuple):
    #: Django's test package (the folder under ``tests/`` in the sdist).
    package: str
    #: Test labels for Django's runner; the package itself runs it all.
    labels: tuple[str, ...]


class Run(NamedTuple):
    settings: str
    suites: tuple[Suite, ...]

    @property
    def packages(self) -> list[str]:
        return [suite.package for suite in self.suites]

    @property
    def labels(self) -> list[str]:
        return [label for suite in self.suites for label in suite.labels]


_OVERRIDES = "test_utils.tests.OverrideSettingsTests."

RUNS: dict[str, Run] = {
    "file_storage": Run(
        settings="tests.django_suite.settings",
        suites=(Suite("file_storage", ("file_storage",)),),
    ),
    "default_storage": Run(
        settings="tests.django_suite.default_storage_settings",
        suites=(
            Suite("file_uploads", ("file_uploads",)),
            Suite(
                "model_fields",
                ("model_fields.test_filefield", "model_fields.test_imagefield"),
            ),
            Suite("admin_widgets", ("admin_widgets",)),
            Suite("model_forms", ("model_forms.tests.FileAndImageFieldTests",)),
            # What reads default_storage, and STORAGES overridden.
            Suite(
                "test_utils",
                tuple(
                    _OVERRIDES + name
                    for name in (
                        "test_override_media_root",
                        "test_override_media_url",
                        "test_override_file_upload_permissions",
                        "test_override_file_upload_directory_permissions",
                        "test_override_staticfiles_storage",
                    )
                ),
            ),
        ),
    ),
}

#: Every test package the runs need from the sdist.
PACKAGES: tuple[str, ...] = tuple(
    package for run in RUNS.values() for package in run.packages
)


def suite_of(test_id: str) -> str:
    """Return the package (suite) a test id such as ``file_uploads.tests.X.y``
    belongs to."""
    return test_id.split(".", 1)[0]
