"""HTTP semantics for serving one representation: Range, conditions, disposition.

Pure functions over header values (RFC 9110 sections 13 and 14, RFC 6266), with no
knowledge of storages: the view asks them which status to answer and which bytes
to send, given the representation's size, ETag and modification time.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

from django.utils.http import parse_http_date_safe

#: Ranges parsed from one header before giving up on it: a request asking for
#: thousands of small overlapping ranges must not cost thousands of reads (the
#: "Apache Killer" of 2011).
MAX_RANGES = 64
#: Longest Range header considered at all.
MAX_RANGE_HEADER = 4096

#: Types a browser may show in the page itself; everything else is an attachment.
INLINE_PREFIXES = ("image/", "video/", "audio/")
INLINE_TYPES = frozenset({"application/pdf", "text/plain"})
#: Types that run script when a browser renders them in the app's origin.
ACTIVE_TYPES = frozenset(
    {
        "image/svg+xml",
        "text/html",
        "application/xhtml+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "text/xsl",
        "application/xslt+xml",
        "application/mathml+xml",
        "application/rdf+xml",
        "application/atom+xml",
        "application/rss+xml",
    }
)
#: What a file named like a compressed file contains: the compressed bytes, never
#: a Content-Encoding the browser would undo (and which would break ranges).
ENCODED_TYPES = {
    "bzip2": "application/x-bzip",
    "gzip": "application/gzip",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}

_RANGE_SPEC = re.compile(r"(\d*)-(\d*)")
_ENTITY_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


@dataclass(frozen=True)
class ByteRange:
    """The bytes ``start`` to ``end`` (both included) of a representation."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        """Return the Content-Range value for this range of ``size`` bytes."""
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str, size: int) -> list[ByteRange] | None:
    """Return the satisfiable ranges of a Range ``header`` over ``size`` bytes,
    sorted and coalesced (overlapping or adjacent ranges joined).

    None means the header is to be ignored (answer 200 with everything): another
    unit than ``bytes``, a malformed range set, a last position before a first
    one, or more than ``MAX_RANGES`` ranges. An empty list means the header is
    valid but nothing in it is satisfiable (answer 416).
    """
    if len(header) > MAX_RANGE_HEADER:
        return None
    unit, sep, range_set = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs = [spec.strip() for spec in range_set.split(",")]
    specs = [spec for spec in specs if spec]  # RFC 9110 5.6.1: empty elements ignored
    if not specs or len(specs) > MAX_RANGES:
        return None
    ranges: list[ByteRange] = []
    for spec in specs:
        match = _RANGE_SPEC.fullmatch(spec)
        if match is None:
            return None
        first, last = match.groups()
        if first:
            start = int(first)
            if last and int(last) < start:
                return None  # an invalid int-range makes the whole set invalid
            if start >= size:
                continue  # unsatisfiable, but others may be
            end = min(int(last), size - 1) if last else size - 1
        elif last:
            suffix = int(last)
            if suffix == 0 or size == 0:
                continue  # "-0" selects nothing
            start, end = max(0, size - suffix), size - 1
        else:
            return None  # "-" alone
        ranges.append(ByteRange(start, end))
    return coalesce(ranges)


def coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    """Return ``ranges`` sorted, with overlapping and adjacent ones merged."""
    merged: list[ByteRange] = []
    for current in sorted(ranges, key=lambda r: r.start):
        if merged and current.start <= merged[-1].end + 1:
            last = merged[-1]
            merged[-1] = ByteRange(last.start, max(last.end, current.end))
        else:
            merged.append(current)
    return merged


@dataclass(frozen=True)
class EntityTag:
    """One entity tag: its quoted opaque value and whether it is weak."""

    opaque: str
    weak: bool = False

    def __str__(self) -> str:
        return f"W/{self.opaque}" if self.weak else self.opaque


def parse_etags(header: str) -> list[EntityTag] | None:
    """Return the entity tags of an If-Match / If-None-Match value.

    ``["*"]`` is returned as an empty list; None means the value is malformed.
    """
    value = header.strip()
    if value == "*":
        return []
    tags: list[EntityTag] = []
    position = 0
    while position < len(value):
        match = _ENTITY_TAG.match(value, position)
        if match is None or match.end() == position:
            return None
        tags.append(EntityTag(match.group(2), weak=bool(match.group(1))))
        position = match.end()
    return tags or None


def strong_match(tags: list[EntityTag], etag: EntityTag | None) -> bool:
    """Return whether ``etag`` strongly matches one of ``tags`` ([] is ``*``)."""
    if not tags:
        return True  # "*": the representation exists
    if etag is None:
        return False
    return not etag.weak and any(
        not tag.weak and tag.opaque == etag.opaque for tag in tags
    )


def weak_match(tags: list[EntityTag], etag: EntityTag | None) -> bool:
    """Return whether ``etag`` weakly matches one of ``tags`` ([] is ``*``)."""
    if not tags:
        return True
    return etag is not None and any(tag.opaque == etag.opaque for tag in tags)


@dataclass(frozen=True)
class Validators:
    """What conditional requests compare with: a strong ETag and a time (seconds)."""

    etag: EntityTag | None
    last_modified: int | None


def precondition_status(headers: dict[str, str], validators: Validators) -> int | None:
    """Return 412 or 304 when a conditional header of a GET or HEAD decides the
    response (RFC 9110 13.2.2, evaluated in that order), else None.

    ``headers`` maps lower-case header names to values.
    """
    etag, modified = validators.etag, validators.last_modified
    if_match = headers.get("if-match")
    if if_match is not None:
        tags = parse_etags(if_match)
        if tags is None or not strong_match(tags, etag):
            return 412
    elif (since := _date(headers.get("if-unmodified-since"))) is not None and (
        modified is None or modified > since
    ):
        return 412
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        tags = parse_etags(if_none_match)
        if tags is not None and weak_match(tags, etag):
            return 304
    elif (
        (since := _date(headers.get("if-modified-since"))) is not None
        and modified is not None
        and modified <= since
    ):
        return 304
    return None


def if_range_holds(value: str | None, validators: Validators) -> bool:
    """Return whether a Range may be honoured given the If-Range ``value``.

    An entity tag must match strongly; a date must equal Last-Modified exactly
    (a time is a weak validator otherwise); anything else fails, so the whole
    representation is sent.
    """
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        tags = parse_etags(value)
        return (
            tags is not None and len(tags) == 1 and strong_match(tags, validators.etag)
        )
    date = _date(value)
    return date is not None and date == validators.last_modified


@dataclass(frozen=True)
class RangeChoice:
    """How to answer a GET: 200 with everything, 206 with ``range``, or 416."""

    status: int
    range: ByteRange | None = None


def select_range(
    headers: dict[str, str], size: int, validators: Validators
) -> RangeChoice:
    """Return how to answer a GET of ``size`` bytes, given its Range and If-Range.

    An empty representation, an ignorable header, a failed If-Range and several
    disjoint ranges (allowed by RFC 9110 14.2; browsers never ask for them) all
    answer 200 with everything; one satisfiable range 206; none 416.
    """
    header = headers.get("range")
    if header is None or size == 0:
        return RangeChoice(200)
    ranges = parse_range(header, size)
    if ranges is None or not if_range_holds(headers.get("if-range"), validators):
        return RangeChoice(200)
    if not ranges:
        return RangeChoice(416)
    return RangeChoice(206, ranges[0]) if len(ranges) == 1 else RangeChoice(200)


def _date(value: str | None) -> int | None:
    return None if value is None else parse_http_date_safe(value.strip())


# -- what the body is --------------------------------------------------------------


def content_type(name: str) -> str:
    """Return the Content-Type for a file called ``name`` (never an encoding)."""
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if encoding:
        return ENCODED_TYPES.get(encoding, "application/octet-stream")
    return guessed or "application/octet-stream"


def is_active(media_type: str) -> bool:
    """Return whether a browser runs script in a document of ``media_type``."""
    base = media_type.split(";", 1)[0].strip().lower()
    return base in ACTIVE_TYPES or base.endswith("+xml")


def is_inline(media_type: str) -> bool:
    """Return whether ``media_type`` may be shown in the browser (not downloaded)."""
    base = media_type.split(";", 1)[0].strip().lower()
    if is_active(base):
        return False
    return base in INLINE_TYPES or base.startswith(INLINE_PREFIXES)


def content_disposition(filename: str, *, attachment: bool) -> str:
    """Return an RFC 6266 Content-Disposition for ``filename``.

    ``filename="..."`` carries an ASCII fallback (accents stripped, other
    characters, quotes, backslashes and control characters replaced); when that
    differs from the name, ``filename*=UTF-8''...`` carries the name itself.
    """
    kind = "attachment" if attachment else "inline"
    fallback = ascii_fallback(filename)
    value = f'{kind}; filename="{fallback}"'
    cleaned = "".join(ch for ch in filename if unicodedata.category(ch)[0] != "C")
    if cleaned and cleaned != fallback:
        value += f"; filename*=UTF-8''{quote(cleaned, safe='')}"
    return value


def ascii_fallback(filename: str) -> str:
    """Return ``filename`` as printable ASCII safe inside a quoted-string."""
    decomposed = unicodedata.normalize("NFKD", filename)
    chars = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue  # the accent of a letter that NFKD split off
        if ch in '"\\' or not " " <= ch <= "~":
            if unicodedata.category(ch)[0] == "C":
                continue  # control and format characters: dropped
            chars.append("_")
        else:
            chars.append(ch)
    return "".join(chars).strip() or "download"
