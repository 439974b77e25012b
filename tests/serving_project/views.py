"""Pages for the browser tests: a video, a pdf.js viewer, and their scripts."""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

from django.http import FileResponse, Http404, HttpRequest, HttpResponse

#: Where the browser tests put pages and pdf.js (a test's temporary folder).
ASSETS = Path(os.environ.get("LAYERED_LIVE_ASSETS", os.devnull))


def page(request: HttpRequest, page: str) -> HttpResponse:
    """Return a test page; the ``url`` query parameter is what it loads."""
    source = ASSETS / f"{page}.html"
    if not source.is_file():
        raise Http404(page)
    return HttpResponse(source.read_text(), content_type="text/html; charset=utf-8")


def static_file(request: HttpRequest, name: str) -> FileResponse:
    """Return a file of the test assets (pdf.js and its worker)."""
    path = (ASSETS / name).resolve()
    if ASSETS.resolve() not in path.parents or not path.is_file():
        raise Http404(name)
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if name.endswith(".mjs"):
        content_type = "text/javascript"
    return FileResponse(path.open("rb"), content_type=content_type)
