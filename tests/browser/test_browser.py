"""Serving to a real browser: headless Chromium (Debian's) driven by Playwright.

The test project runs under gunicorn over FileSystemStorage; every test saves a
screenshot to ``artifacts/browser/``. Without Chromium, Playwright or pdf.js (see
``./dev test``, which installs them) the tests are skipped, except under CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages

from layered_storage import LayeredStorage
from layered_storage.tokens import FileToken
from tests.browser.media import make_mp4, make_pdf
from tests.conftest import inner_config
from tests.live import ROOT, migrate, project_env, start_server

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PDFJS = ROOT / "tests" / "browser" / "node_modules" / "pdfjs-dist" / "build"
ARTIFACTS = ROOT / "artifacts" / "browser"
STAFF_PASSWORD = "browser-test-password"  # a throwaway account of a test database


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if shutil.which("ffmpeg") is None:
        return "no ffmpeg (apt-get install ffmpeg)"
    if not (PDFJS / "pdf.min.mjs").exists():
        return "pdf.js is not installed (npm install in tests/browser)"
    return None


@pytest.fixture(scope="module", autouse=True)
def _browser_tools() -> None:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the browser tests: {missing}")
        pytest.skip(missing)


VIDEO_PAGE = """<!doctype html><meta charset="utf-8"><title>video</title>
<video id="v" muted playsinline width="640" height="360"></video>
<script>
const video = document.getElementById("v");
video.src = new URLSearchParams(location.search).get("url");
window.started = video.play().then(() => "playing", (e) => String(e));
</script>"""

PDF_PAGE = """<!doctype html><meta charset="utf-8"><title>pdf.js</title>
<canvas id="page" style="border: 1px solid #888"></canvas>
<script type="module">
import * as pdfjs from "/static-test/pdfjs/pdf.min.mjs";
pdfjs.GlobalWorkerOptions.workerSrc = "/static-test/pdfjs/pdf.worker.min.mjs";
const url = new URLSearchParams(location.search).get("url");
try {
  // Only what is rendered: no background download of the rest.
  const task = pdfjs.getDocument({url, disableAutoFetch: true, disableStream: true});
  const doc = await task.promise;
  const page = await doc.getPage(30);
  const viewport = page.getViewport({scale: 1});
  const canvas = document.getElementById("page");
  canvas.width = viewport.width;
  canvas.height = viewport.height;
  await page.render({canvasContext: canvas.getContext("2d"), viewport}).promise;
  const text = await page.getTextContent();
  window.result = {pages: doc.numPages, text: text.items.map((i) => i.str).join(" ")};
} catch (error) {
  window.result = {error: String(error)};
}
</script>"""


LINKS_PAGE = """<!doctype html><meta charset="utf-8"><title>links</title>
<h1>Files</h1>"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The test project under gunicorn, with a staff user and a document."""
    folder = tmp_path_factory.mktemp("browser")
    assets = folder / "assets"
    (assets / "pdfjs").mkdir(parents=True)
    for name in ("pdf.min.mjs", "pdf.worker.min.mjs"):
        shutil.copy(PDFJS / name, assets / "pdfjs" / name)
    (assets / "video.html").write_text(VIDEO_PAGE)
    (assets / "pdf.html").write_text(PDF_PAGE)
    (assets / "links.html").write_text(LINKS_PAGE)
    live = {
        "db": str(folder / "db.sqlite3"),
        "log": str(folder / "django.log"),
        "inner": inner_config("filesystem", folder),
    }
    migrate(live)
    setup = (
        "import django; django.setup()\n"
        "from django.contrib.auth.models import User\n"
        "from django.core.files.base import ContentFile\n"
        "from tests.testapp.models import Document\n"
        f"User.objects.create_superuser('staff', '', {STAFF_PASSWORD!r})\n"
        "doc = Document(title='Quarterly report')\n"
        "doc.file.save('report.txt', ContentFile(b'Plaintext of the report.\\n'))\n"
        "print(doc.pk, doc.file.name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", setup],
        cwd=ROOT,
        env=project_env(live),
        capture_output=True,
        check=True,
        timeout=120,
    )
    pk, document = done.stdout.decode().split()
    os.environ["LAYERED_LIVE_ASSETS"] = str(assets)
    try:
        server = start_server("gunicorn", live, folder / "server.log")
    finally:
        del os.environ["LAYERED_LIVE_ASSETS"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield {"server": server, "live": live, "pk": pk, "document": document}
    finally:
        server.stop()


@pytest.fixture
def storage(site: dict[str, Any], settings: Any) -> LayeredStorage:
    """This process's view of the storage the site serves."""
    settings.STORAGES = {
        **settings.STORAGES,
        "inner": site["live"]["inner"],
        "private": {
            "BACKEND": "layered_storage.LayeredStorage",
            "OPTIONS": {"inner": "inner", "layers": ["zstd", "aes-gcm"]},
        },
    }
    layered = storages["private"]
    assert isinstance(layered, LayeredStorage)
    return layered


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--autoplay-policy=no-user-gesture-required"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, site: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(base_url=site["server"].base, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def record(page: Any) -> list[dict[str, Any]]:
    """Collect every response the page gets: URL, status, Range and its headers."""
    seen: list[dict[str, Any]] = []

    def on_response(response: Any) -> None:
        seen.append(
            {
                "url": response.url,
                "status": response.status,
                "range": response.request.headers.get("range"),
                "headers": response.headers,
                "at": time.monotonic(),
            }
        )

    page.on("response", on_response)
    return seen


def shot(page: Any, name: str, *, full_page: bool = False) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def test_video_plays_and_seeks_through_206(
    page: Any, storage: LayeredStorage, tmp_path: Path
) -> None:
    name = storage.save("media/clip.mp4", ContentFile(make_mp4(tmp_path)))
    url = storage.url(name)
    # A connection of 3 MB/s (the video needs about 1.6): at 7.5 s the file is not
    # downloaded yet, as for most people, so seeking there needs a new range.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 20,
            "downloadThroughput": 3 * 1024 * 1024,
            "uploadThroughput": -1,
        },
    )
    seen = record(page)
    page.goto(f"/page/video?url={url}")
    assert page.evaluate("window.started") == "playing"
    page.wait_for_function("document.getElementById('v').currentTime > 0.5")
    seek_started = time.monotonic()
    page.evaluate(
        """() => new Promise((resolve) => {
            const video = document.getElementById("v");
            video.addEventListener("seeked", resolve, {once: true});
            video.currentTime = 7.5;
        })"""
    )
    page.wait_for_function("document.getElementById('v').currentTime > 8.0")
    assert page.evaluate("document.getElementById('v').error") is None
    shot(page, "video-after-seek")
    video = [r for r in seen if urlsplit(r["url"]).path == url]
    assert video, seen
    assert all(r["status"] == 206 for r in video), [
        (r["status"], r["range"]) for r in video
    ]
    assert video[0]["range"] == "bytes=0-"
    after_seek = [
        r
        for r in video
        if r["at"] >= seek_started
        and re.fullmatch(r"bytes=[1-9]\d*-", r["range"] or "")
    ]
    assert after_seek, [(r["range"], r["status"]) for r in video]
    print(
        "\nvideo requests:",
        [(r["range"], r["status"], round(r["at"] - seek_started, 2)) for r in video],
    )


def test_pdfjs_range_loads_and_renders_page_30(
    page: Any, storage: LayeredStorage
) -> None:
    pdf = make_pdf()
    name = storage.save("docs/forty-pages.pdf", ContentFile(pdf))
    url = storage.url(name)
    seen = record(page)
    page.goto(f"/page/pdf?url={url}")
    page.wait_for_function("window.result !== undefined")
    result = page.evaluate("window.result")
    shot(page, "pdfjs-page-30")
    assert result == {"pages": 40, "text": "Page 30"}
    ranged = [r for r in seen if urlsplit(r["url"]).path == url and r["status"] == 206]
    assert len(ranged) >= 2, [(r["status"], r["range"]) for r in seen]
    lengths = [int(r["headers"]["content-length"]) for r in ranged]
    assert sum(lengths) < len(pdf) // 2  # page 30 came by ranges, not the whole file
    print(f"\npdf.js: {len(ranged)} ranges, {sum(lengths)} of {len(pdf)} bytes")


def test_pdf_url_opens_in_the_viewer(page: Any, storage: LayeredStorage) -> None:
    name = storage.save("docs/viewer.pdf", ContentFile(make_pdf(pages=3, padding=1024)))
    downloads: list[Any] = []
    page.on("download", lambda download: downloads.append(download))
    response = page.goto(storage.url(name))
    page.wait_for_timeout(1500)
    shot(page, "pdf-viewer")
    assert response is not None
    assert response.status == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"].startswith("inline;")
    assert "content-security-policy" not in response.headers  # it blanks the viewer
    assert downloads == []
    # Chromium's PDF viewer (its built-in extension) took the document.
    viewer = "chrome-extension://mhjfbmdgcfjbbpaeojofohoefgiehjai/"
    assert any(frame.url.startswith(viewer) for frame in page.frames)


def test_svg_url_downloads_and_runs_no_script(
    page: Any, storage: LayeredStorage
) -> None:
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="80">'
        b'<text x="10" y="40">layered</text>'
        b"<script>alert('svg script ran'); document.title = 'pwned';</script></svg>"
    )
    name = storage.save("images/logo.svg", ContentFile(svg))
    dialogs: list[Any] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto("/page/links")
    page.evaluate(
        """(url) => {
            const link = document.createElement("a");
            link.href = url;
            link.textContent = "logo.svg (a link to an SVG with a script in it)";
            document.body.append(link);
        }""",
        storage.url(name),
    )
    with page.expect_download() as info:
        page.click("a")
    download = info.value
    assert download.suggested_filename == "logo.svg"
    assert Path(download.path()).read_bytes() == svg
    page.wait_for_timeout(500)
    shot(page, "svg-downloaded")
    assert dialogs == []
    assert page.title() != "pwned"


def test_admin_currently_link_returns_plaintext(
    page: Any, site: dict[str, Any]
) -> None:
    page.goto("/admin/login/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("input[type=submit]")
    page.goto(f"/admin/testapp/document/{site['pk']}/change/")
    link = page.locator(".file-upload a").first
    assert link.inner_text() == site["document"]
    href = link.get_attribute("href")
    assert href is not None
    assert href.startswith("/files/")
    assert href.endswith("/" + site["document"].rsplit("/", 1)[-1])
    shot(page, "admin-change-form", full_page=True)
    with page.expect_navigation():
        link.click()
    shot(page, "admin-currently-link")
    assert page.inner_text("body").strip() == "Plaintext of the report."


def test_expired_url_fails(page: Any, storage: LayeredStorage) -> None:
    name = storage.save("docs/old.txt", ContentFile(b"old secret"))
    token = FileToken("private", name, int(time.time()) - 60).sign()
    response = page.goto(f"/files/{token}/old.txt")
    shot(page, "expired-url")
    assert response is not None
    assert response.status == 410
    assert "old secret" not in page.content()
    assert "expired" in page.inner_text("body")
    fresh = page.goto(storage.url(name))
    assert fresh is not None
    assert fresh.status == 200
