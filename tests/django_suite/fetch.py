"""Fetch Django's test packages for the installed Django, cached on disk.

The tests ship only in Django's source distribution, so this downloads the sdist of
exactly the installed version with pip (the package index's ordinary client),
keeps the tarball and the extracted test packages (``suites.PACKAGES``) under a
git-ignored cache folder, and never downloads twice.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from tests.django_suite.suites import PACKAGES

#: Where, inside the sdist (below its top folder), the test packages live.
TESTS_FOLDER = "tests"
#: Written last, listing the packages extracted: marks a complete extraction.
MARKER = "packages.txt"

#: Fragments of pip's output that mean the index could not be reached at all.
_NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Failed to establish a new connection|"
    r"Temporary failure in name resolution|Name or service not known|"
    r"nodename nor servname|getaddrinfo failed|Could not fetch URL|"
    r"ConnectTimeoutError|ReadTimeoutError|Connection (?:refused|reset)|"
    r"Network is unreachable|No route to host|ProxyError|SSLError|"
    r"Max retries exceeded|connection broken",
    re.IGNORECASE,
)


class DownloadError(Exception):
    """``pip download`` failed; ``unreachable`` says whether the index was down."""

    def __init__(self, message: str, *, unreachable: bool) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def installed_django_version() -> str:
    """Return the installed Django's exact version, e.g. ``"5.2.19"``."""
    return importlib.metadata.version("django")


def suite_root(cache_dir: Path, version: str) -> Path:
    """Return the folder that holds the extracted test packages."""
    return cache_dir / f"django-{version}-tests"


def prepare_suite(
    cache_dir: Path,
    version: str | None = None,
    packages: tuple[str, ...] = PACKAGES,
) -> Path:
    """Return a folder holding Django's test ``packages`` (``file_storage``, ...).

    Put the returned folder on ``sys.path`` to import them.

    Raises:
        DownloadError: the sdist is not cached and ``pip download`` failed.
    """
    version = version or installed_django_version()
    root = suite_root(cache_dir, version)
    if set(packages) <= _extracted(root):
        return root
    sdist = _cached_sdist(cache_dir, version) or _download_sdist(cache_dir, version)
    _extract_packages(sdist, root, packages)
    return root


def _extracted(root: Path) -> set[str]:
    """Return the packages a complete extraction put in ``root``."""
    try:
        return set((root / MARKER).read_text().split())
    except OSError:
        return set()


def _sdist_dir(cache_dir: Path) -> Path:
    return cache_dir / "sdists"


def _cached_sdist(cache_dir: Path, version: str) -> Path | None:
    folder = _sdist_dir(cache_dir)
    if not folder.is_dir():
        return None
    wanted = f"django-{version}.tar.gz"
    for candidate in folder.iterdir():
        if candidate.name.lower() == wanted and candidate.is_file():
            return candidate
    return None


def _download_sdist(cache_dir: Path, version: str) -> Path:
    folder = _sdist_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # Download into a private folder, then move: a killed run leaves no half file
    # that a later run would take for the real one.
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"django=={version}",
            "-d",
            scratch,
            "--disable-pip-version-check",
            "--no-input",
            "--timeout",
            "30",
            "--retries",
            "2",
        ]
        try:
            completed = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise DownloadError(
                f"'pip download' of django=={version} timed out.", unreachable=True
            ) from error
        output = completed.stdout + completed.stderr
        if completed.returncode != 0:
            raise DownloadError(
                f"'{' '.join(command[2:])}' failed (exit {completed.returncode}):\n"
                f"{output.strip()[-3000:]}",
                unreachable=bool(_NETWORK_ERRORS.search(output)),
            )
        downloaded = [
            path
            for path in Path(scratch).iterdir()
            if path.name.lower() == f"django-{version}.tar.gz"
        ]
        if not downloaded:
            raise DownloadError(
                f"'pip download' succeeded but left no django-{version}.tar.gz in "
                f"{scratch}: {sorted(p.name for p in Path(scratch).iterdir())}",
                unreachable=False,
            )
        final = folder / downloaded[0].name
        os.replace(downloaded[0], final)
    return final


def _extract_packages(sdist: Path, root: Path, packages: tuple[str, ...]) -> None:
    """Extract ``<top>/tests/<package>/**`` of ``sdist`` into ``root/<package>``
    for each of ``packages``, replacing an older, smaller extraction.

    Only regular files with plain relative names are written.
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-"))
    try:
        written = dict.fromkeys(packages, 0)
        with tarfile.open(sdist, "r:gz") as archive:
            for member in archive:
                parts = PurePosixPath(member.name).parts
                if (
                    len(parts) < 4
                    or parts[1] != TESTS_FOLDER
                    or parts[2] not in written
                    or not member.isfile()
                ):
                    continue
                relative = parts[2:]
                if any(part in ("", ".", "..") for part in relative):
                    raise ValueError(f"Refusing to extract {member.name!r}.")
                source = archive.extractfile(member)
                if source is None:  # pragma: no cover - isfile() members have data
                    continue
                target = scratch.joinpath(*relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
                written[parts[2]] += 1
        missing = [p for p in packages if not (scratch / p / "__init__.py").is_file()]
        if missing:
            raise ValueError(
                f"{sdist} has no {TESTS_FOLDER}/<package>/__init__.py for {missing} "
                f"(files found per package: {written})."
            )
        (scratch / MARKER).write_text("\n".join(packages) + "\n")
        _install(scratch, root, packages)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _install(scratch: Path, root: Path, packages: tuple[str, ...]) -> None:
    """Move the complete extraction ``scratch`` to ``root``."""
    if root.exists():
        # An older extraction with fewer packages: move it aside first (another
        # run may have done so, or installed a complete one, meanwhile).
        aside = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-old-"))
        with contextlib.suppress(OSError):
            os.replace(root, aside / "old")
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.replace(scratch, root)
    except OSError:
        # Another run extracted it meanwhile: keep theirs.
        if not set(packages) <= _extracted(root):
            raise
