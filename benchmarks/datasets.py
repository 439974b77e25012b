"""Deterministic input files, generated locally and streamed to disk.

Three kinds of content:

* ``text``: real source code, the installed Django package then the Python standard
  library (``*.py`` in sorted order), concatenated up to a corpus cap and repeated to
  size. Deterministic for a given Python and Django version.
* ``jsonl``: JSON-lines application logs from a seeded RNG.
* ``random``: incompressible bytes from a seeded RNG.

Files are written chunk by chunk, so a 1 GiB input never sits in memory.
"""

from __future__ import annotations

import functools
import random
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import django

from benchmarks import MiB

DATASETS = ("text", "jsonl", "random")
#: How much distinct source text the ``text`` dataset repeats.
TEXT_CORPUS_CAP = 16 * MiB
_SEED = 20240611
_CHUNK = MiB


@functools.lru_cache(maxsize=1)
def text_corpus(cap: int = TEXT_CORPUS_CAP) -> bytes:
    """Return Django's then the stdlib's ``.py`` sources, concatenated up to ``cap``."""
    roots = [Path(django.__file__).parent, Path(sysconfig.get_paths()["stdlib"])]
    parts: list[bytes] = []
    total = 0
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "site-packages" in path.relative_to(root).parts:
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            parts.append(data)
            total += len(data)
            if total >= cap:
                return b"".join(parts)[:cap]
    return b"".join(parts)


def _text_chunks() -> Iterator[bytes]:
    corpus = text_corpus()
    while True:
        yield corpus


_LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "INFO", "WARNING", "ERROR")
_SERVICES = ("api", "auth", "billing", "search", "worker", "media")
_METHODS = ("GET", "GET", "GET", "POST", "PUT", "DELETE")
_PATHS = (
    "/api/v1/users/{}",
    "/api/v1/orders/{}",
    "/api/v1/orders/{}/items",
    "/api/v1/search?q=item{}",
    "/media/uploads/{}.jpg",
    "/healthz",
)
_STATUSES = (200, 200, 200, 200, 201, 204, 301, 400, 403, 404, 500)
_MESSAGES = (
    "request completed",
    "cache miss, loading from database",
    "slow query detected",
    "user session refreshed",
    "upstream timeout, retrying",
    "payment authorised",
)


def _jsonl_chunks() -> Iterator[bytes]:
    """Yield ~1 MiB blocks of JSON lines; the same seed gives the same bytes."""
    rng = random.Random(_SEED)
    millis = 1_700_000_000_000
    choice, randint, bits = rng.choice, rng.randint, rng.getrandbits
    while True:
        lines: list[str] = []
        size = 0
        while size < _CHUNK:
            millis += randint(0, 250)
            seconds, ms = divmod(millis, 1000)
            line = (
                f'{{"ts":{seconds}.{ms:03d},"level":"{choice(_LEVELS)}",'
                f'"service":"{choice(_SERVICES)}","host":"web-{randint(1, 24):02d}",'
                f'"method":"{choice(_METHODS)}",'
                f'"path":"{choice(_PATHS).format(randint(1, 99999))}",'
                f'"status":{choice(_STATUSES)},"duration_ms":{rng.random() * 900:.2f},'
                f'"user_id":{randint(1, 500000)},"request_id":"{bits(64):016x}",'
                f'"msg":"{choice(_MESSAGES)}"}}\n'
            )
            lines.append(line)
            size += len(line)
        yield "".join(lines).encode("ascii")


def _random_chunks() -> Iterator[bytes]:
    rng = random.Random(_SEED)
    while True:
        yield rng.randbytes(_CHUNK)


_GENERATORS = {"text": _text_chunks, "jsonl": _jsonl_chunks, "random": _random_chunks}


def generate(kind: str, size: int, path: Path) -> Path:
    """Write exactly ``size`` bytes of dataset ``kind`` to ``path``, streamed."""
    missing = size
    with open(path, "wb") as out:
        for chunk in _GENERATORS[kind]():
            if missing <= 0:
                break
            view = memoryview(chunk)[:missing]
            out.write(view)
            missing -= len(view)
    return path


def ensure(kind: str, size: int, directory: Path) -> Path:
    """Return the path of dataset ``kind`` at ``size`` in ``directory``, made once."""
    path = directory / f"{kind}-{size}.dat"
    if not (path.exists() and path.stat().st_size == size):
        generate(kind, size, path)
    return path
