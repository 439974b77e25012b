"""The demo: real files through the full layer stack into a temporary folder.

``python -m layered_storage.demo`` needs no settings and no keys: it generates a key,
stores a corpus of real files (this package's and Django's own sources) through
``["zstd", "aes-gcm"]`` over a FileSystemStorage in a temporary folder, reads every
file back, verifies it byte for byte, shows that a tampered file is refused, and
prints stored against original sizes and the speed of each direction.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import tempfile
import time
from pathlib import Path


def corpus(limit: int) -> list[Path]:
    """Return up to ``limit`` bytes worth of real source files, in a stable order."""
    import django

    import layered_storage

    files: list[Path] = []
    total = 0
    for root in (Path(layered_storage.__file__).parent, Path(django.__file__).parent):
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix in {".py", ".txt", ".html", ".po", ".js"}:
                files.append(path)
                total += path.stat().st_size
                if total >= limit:
                    return files
    return files


def __getattr__(attribute: str) -> object:
    """Give the URLconf's ``urlpatterns`` only when Django asks for them."""
    if attribute == "urlpatterns":
        from django.urls import include, path

        return [path("files/", include("layered_storage.urls"))]
    raise AttributeError(attribute)


def configure(folder: Path) -> None:
    """Configure Django in-process: a generated key, local files in ``folder``."""
    import django
    from django.conf import settings

    from layered_storage.keys import generate_key

    settings.configure(
        INSTALLED_APPS=["layered_storage"],
        # This module is the URLconf (``urlpatterns`` below), so url() gives a
        # signed link to the plaintext, signed with a key made for this run only.
        ROOT_URLCONF=__name__,
        SECRET_KEY=secrets.token_urlsafe(50),
        STORAGES={
            "plain": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(folder)},
            },
            "default": {
                "BACKEND": "layered_storage.LayeredStorage",
                "OPTIONS": {"inner": "plain", "layers": ["zstd", "aes-gcm"]},
            },
        },
        LAYERED_STORAGE={"KEYS": [generate_key()], "NAMESPACE": "demo"},
    )
    django.setup()


def run(limit: int) -> int:
    """Run the demo; return the process exit code."""
    from django.core import checks
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages

    from layered_storage import DecryptionError, LayeredStorage

    with tempfile.TemporaryDirectory(prefix="layered-demo-") as folder:
        configure(Path(folder))
        problems = checks.run_checks()
        if problems:
            for problem in problems:
                print(problem)
            return 1
        storage = storages["default"]
        assert isinstance(storage, LayeredStorage)
        files = corpus(limit)
        names: dict[str, str] = {}
        original = 0
        started = time.perf_counter()
        for path in files:
            data = path.read_bytes()
            original += len(data)
            name = storage.save(
                f"corpus/{path.parent.name}/{path.name}", ContentFile(data)
            )
            names[name] = hashlib.sha256(data).hexdigest()
        save_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for name, digest in names.items():
            with storage.open(name) as opened:
                if hashlib.sha256(opened.read()).hexdigest() != digest:
                    print(f"MISMATCH: {name}")
                    return 1
        read_seconds = time.perf_counter() - started
        stored = sum(storage.inner.size(name) for name in names)
        victim = next(iter(names))
        big = b"".join(path.read_bytes() for path in files) * 4
        started = time.perf_counter()
        big_name = storage.save("corpus/all-sources.txt", ContentFile(big))
        big_save = time.perf_counter() - started
        started = time.perf_counter()
        with storage.open(big_name) as opened:
            same = (
                hashlib.sha256(opened.read()).digest() == hashlib.sha256(big).digest()
            )
        big_read = time.perf_counter() - started
        if not same:
            print(f"MISMATCH: {big_name}")
            return 1
        print(f"layered_storage demo: {len(names)} real files, stack zstd + aes-gcm")
        print(f"  stored in      {folder} (deleted afterwards)")
        print(f"  original size  {original / 1e6:10.2f} MB")
        ratio = original / stored
        print(f"  stored size    {stored / 1e6:10.2f} MB  ({ratio:.2f}x smaller)")
        print(f"  save           {original / save_seconds / 1e6:10.1f} MB/s")
        print(f"  read + verify  {original / read_seconds / 1e6:10.1f} MB/s")
        big_stored = storage.inner.size(big_name) / 1e6
        print(
            f"  one {len(big) / 1e6:.0f} MB file: stored {big_stored:.1f} MB, save "
            f"{len(big) / big_save / 1e6:.0f} MB/s, read + verify "
            f"{len(big) / big_read / 1e6:.0f} MB/s"
        )
        print(f"  size({victim!r}) = {storage.size(victim)} (plaintext bytes)")
        print(f"  url() = {storage.url(victim)} (signed, serves the plaintext)")
        with storage.inner.open(victim) as raw:
            head = raw.read(16)
        print(f"  first stored bytes of it: {head.hex(' ')}")
        tampered = bytearray(Path(storage.inner.path(victim)).read_bytes())
        tampered[len(tampered) // 2] ^= 1  # a bit in the middle of the ciphertext
        Path(storage.inner.path(victim)).write_bytes(bytes(tampered))
        try:
            storage.open(victim).read()
        except DecryptionError as exc:
            print(f"  one flipped bit is refused: {type(exc).__name__}: {exc}")
        else:
            print("  ERROR: a tampered file was accepted")
            return 1
        print("all files read back identical.")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--megabytes", type=int, default=40, help="corpus size in MB (default 40)"
    )
    arguments = parser.parse_args()
    raise SystemExit(run(arguments.megabytes * 1_000_000))


if __name__ == "__main__":
    main()
