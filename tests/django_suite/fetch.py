"""Fetch Django's ``tests/file_storage`` for the installed Django, cached on disk.

The tests ship only in Django's source distribution, so this downloads the sdist of
exactly the installed version with pip (the package index's ordinary client),
keeps the tarball and the extracted tests under a git-ignored cache folder, and
never downloads twice.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

#: Where, inside the sdist (below its top folder), the suite lives.
SUITE_PATH = ("tests", "file_storage")
#: The file whose presence marks a complete extraction.
MARKER = "tests.py"

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
    """Return the folder that holds the extracted ``file_storage`` package."""
    return cache_dir / f"django-{version}-tests"


def prepare_suite(cache_dir: Path, version: str | None = None) -> Path:
    """Return a folder holding Django's ``file_storage`` test package.

    Put the returned folder on ``sys.path`` to import ``file_storage``.

    Raises:
        DownloadError: the sdist is not cached and ``pip download`` failed.
    """
    version = version or installed_django_version()
    root = suite_root(cache_dir, version)
    if (root / "file_storage" / MARKER).is_file():
        return root
    sdist = _cached_sdist(cache_dir, version) or _download_sdist(cache_dir, version)
    _extract_suite(sdist, root)
    return root


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


def _extract_suite(sdist: Path, root: Path) -> None:
    """Extract ``<top>/tests/file_storage/*`` of ``sdist`` into ``root/file_storage``.

    Only regular files with plain relative names are written.
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-"))
    try:
        written = 0
        with tarfile.open(sdist, "r:gz") as archive:
            for member in archive:
                parts = PurePosixPath(member.name).parts
                if len(parts) < 4 or parts[1:3] != SUITE_PATH or not member.isfile():
                    continue
                relative = parts[3:]
                if any(part in ("", ".", "..") for part in relative):
                    raise ValueError(f"Refusing to extract {member.name!r}.")
                source = archive.extractfile(member)
                if source is None:  # pragma: no cover - isfile() members have data
                    continue
                target = scratch.joinpath("file_storage", *relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
                written += 1
        if not (scratch / "file_storage" / MARKER).is_file():
            raise ValueError(
                f"{sdist} has no {'/'.join(SUITE_PATH)}/{MARKER} ({written} files "
                "found there)."
            )
        try:
            os.replace(scratch, root)
        except OSError:
            # Another run extracted it meanwhile: keep theirs.
            if not (root / "file_storage" / MARKER).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
