"""The tests of Django's suites that do not apply to a LayeredStorage, and why.

Each entry is an ``fnmatch`` pattern over the test id (``package.module.Class.
method``; in ``file_storage``, ``*`` in the class position covers FileStorageTests
and the four classes that inherit its tests), the reason, and when it applies: only
before a Django release, or only as root. The same exclusions hold for every layer
stack. Everything else the labels select (see ``suites``) runs and must pass.

Each exclusion is of one ``kind``:

- ``path``: the test reaches the stored file through ``path()`` or the OS, to read
  its bytes or metadata or to move it: a LayeredStorage has no local path holding
  the plaintext (``path()`` raises NotImplementedError by design), and the stored
  bytes are encoded;
- ``class-path``: the test asserts the backend's own class path (what
  ``deconstruct()`` gives, the class a dotted path names);
- ``environment``: the test cannot pass on this machine whatever the storage.

A pattern that matches nothing (a test another Django version lacks) is reported
by the runner, not an error.
"""

from __future__ import annotations

import os
from typing import NamedTuple

#: The kinds of exclusion (see above).
KINDS = ("path", "class-path", "environment")


class Exclusion(NamedTuple):
    pattern: str
    kind: str
    reason: str
    #: Applies only to Django releases before this one (a test that changed).
    before_django: tuple[int, int] | None = None
    #: Applies only when the tests run as root (whom file modes do not stop).
    as_root_only: bool = False


_FS = "file_storage.tests."
_UPLOADS = "file_uploads.tests."
_IMAGES = "model_fields.test_imagefield."

EXCLUSIONS: tuple[Exclusion, ...] = (
    # == file_storage ================================================================
    Exclusion(_FS + "*.test_file_path", "path", "asserts storage.path(name)"),
    Exclusion(
        _FS + "*.test_file_methods_pathlib_path", "path", "asserts storage.path(Path)"
    ),
    Exclusion(
        _FS + "*.test_file_storage_preserves_filename_case",
        "path",
        "asserts storage.path(name) (the write through open(name, 'w') before it "
        "works)",
    ),
    Exclusion(
        _FS + "*.test_file_get_accessed_time",
        "path",
        "compares with os.path.getatime(storage.path(name))",
    ),
    Exclusion(
        _FS + "*.test_file_get_created_time",
        "path",
        "compares with os.path.getctime(storage.path(name))",
    ),
    Exclusion(
        _FS + "*.test_file_get_modified_time",
        "path",
        "compares with os.path.getmtime(storage.path(name))",
    ),
    Exclusion(
        _FS + "FileStoragePermissions.*",
        "path",
        "os.stat(storage.path(name)) to check FILE_UPLOAD_*PERMISSIONS",
    ),
    Exclusion(
        _FS + "FileFieldStorageTests.test_file_object",
        "path",
        "open(temp_storage.path(name)) reads the stored (encoded) bytes as text",
    ),
    Exclusion(
        _FS + "FileSystemStorageTests.test_deconstruction",
        "class-path",
        "asserts deconstruct() gives 'django.core.files.storage.FileSystemStorage'",
    ),
    Exclusion(
        _FS + "GetStorageClassTests.test_get_filesystem_storage",
        "class-path",
        "asserts that get_storage_class('django.core.files.storage."
        "FileSystemStorage') (deprecated, gone in Django 5.1) is the class the test "
        "module names FileSystemStorage, which is the layered one",
        before_django=(5, 1),
    ),
    # == file_uploads ================================================================
    Exclusion(
        _UPLOADS + "FileUploadTests.test_filename_case_preservation",
        "path",
        "asserts os.path.basename(obj.testfile.path), i.e. storage.path(name)",
    ),
    Exclusion(
        _UPLOADS + "DirectoryCreationTests.test_readonly_root",
        "environment",
        "chmods MEDIA_ROOT to 0o500 and expects PermissionError, which root never "
        "gets; the test replaces STORAGES['default'] with a plain "
        "FileSystemStorage, so it does not involve LayeredStorage anyway",
        as_root_only=True,
    ),
    # == model_fields ================================================================
    Exclusion(
        _IMAGES + "ImageFieldTests.test_instantiate_missing",
        "path",
        "moves the stored file away with shutil.move(field.path, ...), i.e. "
        "storage.path(name)",
    ),
    Exclusion(
        _IMAGES + "ImageFieldTests.test_delete_when_missing",
        "path",
        "deletes the stored file with os.remove(field.path), i.e. storage.path(name)",
    ),
)


def exclusions_for(packages: list[str]) -> list[Exclusion]:
    """Return the exclusions that apply to ``packages`` on this Django, as this
    user."""
    import django

    version = django.VERSION[:2]
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    return [
        e
        for e in EXCLUSIONS
        if e.pattern.split(".", 1)[0] in packages
        and (e.before_django is None or version < e.before_django)
        and (root or not e.as_root_only)
    ]
