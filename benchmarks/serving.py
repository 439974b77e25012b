"""Serving throughput: the layered view against Django's own FileResponse.

A 64 MiB text file is served through Django's WSGI handler, in this process: once
by ``FileResponse`` from a plain ``FileSystemStorage`` (the baseline: what a project
without encryption serves), and through ``layered_storage.views.serve`` from a
layered storage per stack, whole and as one 8 MiB range from the middle. Each body
is consumed as a WSGI server without sendfile consumes it, and only the ratios of
bytes per second count. ``python -m benchmarks.serving`` runs just this part.
"""

from __future__ import annotations

import functools
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import MiB, datasets, env
from benchmarks.checks import Check

SIZE = 64 * MiB
RANGE = 8 * MiB
REPS = 5
#: (stack, target ratio of the whole-file throughput to FileResponse's).
TARGETS = {"zstd+aes-gcm": 0.5, "aes-gcm": 0.8}


def plain_view(request: Any, name: str) -> Any:
    from django.core.files.storage import storages
    from django.http import FileResponse

    return FileResponse(storages["default"].open(name, "rb"))


def layered_view(request: Any, stack: str, name: str) -> Any:
    from layered_storage.views import serve

    return serve(request, env.layered(stack), name)


def _urlpatterns() -> list[Any]:
    from django.urls import path

    return [
        path("plain/<path:name>", plain_view),
        path("layered/<str:stack>/<path:name>", layered_view),
    ]


def __getattr__(name: str) -> Any:
    # This module is the benchmark's URLconf; Django is configured only at run time.
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)


def _get(handler: Any, path: str, byte_range: str | None = None) -> int:
    """Serve one GET through ``handler``; return the body's length."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
    }
    if byte_range:
        environ["HTTP_RANGE"] = byte_range
    statuses: list[str] = []
    body = handler(environ, lambda status, headers: statuses.append(status))
    received = 0
    try:
        for chunk in body:
            received += len(chunk)
    finally:
        body.close()
    expected = "206" if byte_range else "200"
    if not statuses or not statuses[0].startswith(expected):
        raise AssertionError(f"{path}: {statuses}")
    return received


def _speed(serve_once: Callable[[], int]) -> float:
    """Return the median bytes per second of ``REPS`` runs (after one warm-up)."""
    serve_once()
    speeds = []
    for _ in range(REPS):
        started = time.perf_counter()
        count = serve_once()
        speeds.append(count / (time.perf_counter() - started))
    return statistics.median(speeds)


def run(workdir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Measure; return MB/s per case and the ratios to FileResponse."""
    from django.conf import settings
    from django.core.files import File
    from django.core.handlers.wsgi import WSGIHandler

    settings.ROOT_URLCONF = __name__
    src = datasets.ensure("text", SIZE, workdir / "data")
    with src.open("rb") as data:
        plain_name = env.plain_fs().save("serving/plain.txt", File(data))
    handler = WSGIHandler()
    start = SIZE // 2 - RANGE // 2
    byte_range = f"bytes={start}-{start + RANGE - 1}"
    speeds = {"FileResponse": _speed(lambda: _get(handler, f"/plain/{plain_name}"))}
    log(f"  FileResponse: {speeds['FileResponse'] / 1e6:.0f} MB/s")
    for stack in TARGETS:
        storage = env.layered(stack)
        with src.open("rb") as data:
            name = storage.save(f"serving/{stack}.txt", File(data))
        path = f"/layered/{stack}/{name}"
        speeds[stack] = _speed(functools.partial(_get, handler, path))
        speeds[f"{stack} range"] = _speed(
            functools.partial(_get, handler, path, byte_range)
        )
        log(
            f"  {stack}: {speeds[stack] / 1e6:.0f} MB/s whole, "
            f"{speeds[f'{stack} range'] / 1e6:.0f} MB/s for an 8 MiB range"
        )
        storage.delete(name)
    env.plain_fs().delete(plain_name)
    baseline = speeds["FileResponse"]
    return {
        "size": SIZE,
        "range": RANGE,
        "mb_per_s": {case: speed / 1e6 for case, speed in speeds.items()},
        "ratios": {case: speed / baseline for case, speed in speeds.items()},
    }


def serving_checks(result: dict[str, Any] | None) -> list[Check]:
    """Return the serving targets: whole-file throughput against FileResponse."""
    found = []
    for stack, target in TARGETS.items():
        value = None if result is None else result["ratios"][stack]
        found.append(
            Check(
                f"serve 64 MiB text, {stack} view / FileResponse",
                value,
                target,
                note="(WSGI, in process)",
            )
        )
    return found


def report(result: dict[str, Any], emit: Callable[[str], None]) -> None:
    ratios = result["ratios"]
    emit(
        f"\nServing a {result['size'] // MiB} MiB text file through Django's WSGI "
        f"handler (FileResponse: {result['mb_per_s']['FileResponse']:.0f} MB/s)"
    )
    for stack in TARGETS:
        emit(
            f"  {stack}: whole file {ratios[stack]:.2f} x FileResponse, an "
            f"{result['range'] // MiB} MiB range {ratios[f'{stack} range']:.2f} x "
            "(bytes per second)"
        )


def main() -> int:
    return env.run_alone(
        "serving", lambda workdir, _key, log: run(workdir, log), report, serving_checks
    )


if __name__ == "__main__":
    sys.exit(main())
