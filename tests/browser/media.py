"""Files for the browser tests: a 40-page PDF written by hand, an MP4 from ffmpeg."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path


def make_pdf(pages: int = 40, padding: int = 40 * 1024) -> bytes:
    """Return a PDF of ``pages`` pages, each saying "Page N" in large type over
    ``padding`` bytes of drawing, so the file is large enough to be range-loaded.

    The small page objects come first and the large contents after them, as in
    most real PDFs: finding page 30 then reads the start and end of the file,
    and drawing it one content stream.
    """
    rng = random.Random(0)
    first_page, first_content = 4, 4 + pages
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Count %d /Kids [%s] >>"
        % (pages, b" ".join(b"%d 0 R" % (first_page + i) for i in range(pages))),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    objects += [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
        % (first_content + i)
        for i in range(pages)
    ]
    for number in range(1, pages + 1):
        drawing = []
        size = 0
        while size < padding:
            x, y = rng.randrange(20, 580), rng.randrange(20, 500)
            gray = rng.random() * 0.3 + 0.7
            width, height = rng.randrange(2, 9), rng.randrange(2, 9)
            op = f"{gray:.3f} g {x} {y} {width} {height} re f\n"
            drawing.append(op)
            size += len(op)
        text = f"0 g BT /F1 72 Tf 120 640 Td (Page {number}) Tj ET\n"
        stream = ("".join(drawing) + text).encode("ascii")
        objects.append(
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
        )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def make_mp4(folder: Path, seconds: int = 12) -> bytes:
    """Return an H.264 MP4 of ``seconds`` seconds (a key frame every second) with
    its moov atom at the end, as ffmpeg writes it without +faststart; noisy, so it
    is large enough that a browser seeks in it with a new range request."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not installed (apt-get install ffmpeg)")
    target = folder / "clip.mp4"
    subprocess.run(
        [
            ffmpeg,
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=duration={seconds}:size=640x360:rate=25,noise=alls=40:allf=t",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "25",
            "-b:v",
            "12M",
            "-movflags",
            "-faststart",
            str(target),
        ],
        check=True,
        timeout=120,
    )
    return target.read_bytes()
