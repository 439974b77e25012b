"""The Django file_storage tests that do not apply to a LayeredStorage, and why.

Each entry is an ``fnmatch`` pattern over the test id (``module.Class.method``;
``*`` in the class position covers FileStorageTests and the four Django classes that
inherit its tests), the reason, and whether it applies only to stacks with an
encryption layer (which binds each file to its name).
Everything else in Django's suite runs and must pass. A pattern that matches nothing
(e.g. a test a newer Django removed) is reported by the runner, not an error.
"""

from __future__ import annotations

from typing import NamedTuple


class Exclusion(NamedTuple):
    pattern: str
    reason: str
    encrypted_only: bool = False
    #: Applies only to Django releases before this one (a test that changed).
    before_django: tuple[int, int] | None = None


_T = "file_storage.tests."
#: The layers that bind a file to its name (see LayeredStorage._save).
ENCRYPTION_LAYERS = frozenset({"aes-gcm", "chacha20-poly1305"})

EXCLUSIONS: tuple[Exclusion, ...] = (
    # -- path(): a LayeredStorage has no local path holding the file ---------------
    Exclusion(
        _T + "*.test_file_path",
        "asserts storage.path(name)",
    ),
    Exclusion(
        _T + "*.test_file_methods_pathlib_path",
        "asserts storage.path(Path(...))",
    ),
    Exclusion(
        _T + "*.test_file_get_accessed_time",
        "compares with os.path.getatime(storage.path(name))",
    ),
    Exclusion(
        _T + "*.test_file_get_created_time",
        "compares with os.path.getctime(storage.path(name))",
    ),
    Exclusion(
        _T + "*.test_file_get_modified_time",
        "compares with os.path.getmtime(storage.path(name))",
    ),
    Exclusion(
        _T + "FileStoragePermissions.*",
        "os.stat(storage.path(name)) to check FILE_UPLOAD_*PERMISSIONS",
    ),
    Exclusion(
        _T + "FileFieldStorageTests.test_file_object",
        "open(temp_storage.path(name)) reads the stored (encoded) bytes as text",
    ),
    # -- opening for writing: LayeredStorage.open() is read-only by design ---------
    Exclusion(
        _T + "*.test_file_access_options",
        "storage.open(name, 'w') then write()",
    ),
    Exclusion(
        _T + "*.test_file_storage_preserves_filename_case",
        "storage.open(name, 'w') then write(), and storage.path()",
    ),
    Exclusion(
        _T + "FileFieldStorageTests.test_filefield_write",
        "FieldFile.open('wb') then write()",
    ),
    # -- FileSystemStorage's own identity and internals ----------------------------
    Exclusion(
        _T + "FileSystemStorageTests.test_deconstruction",
        "asserts deconstruct() gives 'django.core.files.storage.FileSystemStorage'",
    ),
    Exclusion(
        _T + "OverwritingStorageOSOpenFlagsWarningTests."
        "test_os_open_flags_deprecation_warning",
        "FileSystemStorage.OS_OPEN_FLAGS (os.open() flags of its _save, deprecated, "
        "gone in Django 6.0); allow_overwrite, its replacement, runs in "
        "OverwritingStorageTests",
    ),
    Exclusion(
        _T + "OverwritingStorageOSOpenFlagsTests.test_save_overwrite_behavior",
        "overwrites through FileSystemStorage.OS_OPEN_FLAGS (deprecated, gone in "
        "Django 6.0), which the inner FileSystemStorage does not get; "
        "allow_overwrite, its replacement, runs in OverwritingStorageTests",
    ),
    Exclusion(
        _T + "OverwritingStorageOSOpenFlagsTests.test_file_save_broken_symlink",
        "OverwritingStorage.get_available_name() keeps a taken name for "
        "OS_OPEN_FLAGS (no O_EXCL) to overwrite; the inner FileSystemStorage keeps "
        "O_EXCL and renames the file, and a name-bound (encrypted) file refuses to "
        "be renamed after encryption: LayeredStorageError 'Save it again'",
        encrypted_only=True,
    ),
    Exclusion(
        _T + "OverwritingStorageOSOpenFlagsTests.test_save_doesnt_close",
        "same as test_file_save_broken_symlink: saves a taken name twice relying on "
        "OS_OPEN_FLAGS to overwrite",
        encrypted_only=True,
    ),
    # -- Django 4.2's versions of the same tests -------------------------------------
    Exclusion(
        _T + "GetStorageClassTests.*",
        "get_storage_class() (deprecated, gone in Django 5.1) must return "
        "FileSystemStorage itself, which the runner replaces",
        before_django=(5, 1),
    ),
    Exclusion(
        _T + "OverwritingStorageTests.*",
        "before Django 5.1 this class overwrites through OS_OPEN_FLAGS, as "
        "OverwritingStorageOSOpenFlagsTests does later (see above)",
        before_django=(5, 1),
    ),
)


def exclusions_for(layers: list[str]) -> list[Exclusion]:
    """Return the exclusions that apply to the stack ``layers`` on this Django."""
    import django

    encrypted = bool(ENCRYPTION_LAYERS.intersection(layers))
    version = django.VERSION[:2]
    return [
        e
        for e in EXCLUSIONS
        if (encrypted or not e.encrypted_only)
        and (e.before_django is None or version < e.before_django)
    ]
