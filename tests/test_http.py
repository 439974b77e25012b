"""HTTP semantics: Range parsing, conditional requests and Content-Disposition."""

from __future__ import annotations

import itertools
import re
import unicodedata
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layered_storage.http import (
    MAX_RANGES,
    ByteRange,
    EntityTag,
    RangeChoice,
    Validators,
    ascii_fallback,
    coalesce,
    content_disposition,
    content_type,
    if_range_holds,
    is_active,
    is_inline,
    parse_etags,
    parse_range,
    precondition_status,
    select_range,
)

ETAG = EntityTag('"abc"')
MODIFIED = 1_445_412_480  # Wed, 21 Oct 2015 07:28:00 GMT
MODIFIED_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
EARLIER_DATE = "Wed, 21 Oct 2015 07:27:59 GMT"
LATER_DATE = "Wed, 21 Oct 2015 07:28:01 GMT"
VALIDATORS = Validators(ETAG, MODIFIED)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, [(0, 0)]),
        ("bytes=-1", 10, [(9, 9)]),
        ("bytes=0-", 10, [(0, 9)]),
        ("bytes=2-5", 10, [(2, 5)]),
        ("bytes=5-999", 10, [(5, 9)]),  # an end past EOF is clamped
        ("bytes=-999", 10, [(0, 9)]),  # a suffix longer than the file is everything
        ("BYTES = 1-2", 10, [(1, 2)]),  # the unit is case-insensitive
        ("bytes=0-1, 2-3", 10, [(0, 3)]),  # adjacent ranges coalesce
        ("bytes=4-6,0-5", 10, [(0, 6)]),  # overlapping ones too
        ("bytes=0-1,5-6", 10, [(0, 1), (5, 6)]),
        ("bytes=0-1,,", 10, [(0, 1)]),  # empty list elements are ignored
        ("bytes=10-", 10, []),
        ("bytes=-0", 10, []),
        ("bytes=10-20,30-", 10, []),
        ("bytes=10-,0-0", 10, [(0, 0)]),  # one satisfiable range is enough
        ("bytes=0-0", 0, []),
        ("items=0-1", 10, None),  # unknown unit
        ("bytes", 10, None),
        ("bytes=", 10, None),
        ("bytes=-", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=5-4", 10, None),  # last before first: the whole set is invalid
        ("bytes=0-1;2-3", 10, None),
        ("bytes=+1-2", 10, None),
        ("bytes=1-2-3", 10, None),
        ("bytes=0-" + "0" * 5000, 10, None),  # too long to consider
    ],
)
def test_parse_range(
    header: str, size: int, expected: list[tuple[int, int]] | None
) -> None:
    ranges = parse_range(header, size)
    if expected is None:
        assert ranges is None
    else:
        assert ranges == [ByteRange(a, b) for a, b in expected]


def test_parse_range_caps_the_number_of_ranges() -> None:
    header = "bytes=" + ",".join(f"{i}-{i}" for i in range(MAX_RANGES))
    assert parse_range(header, 1000) == [ByteRange(0, MAX_RANGES - 1)]
    assert parse_range(header + ",999-999", 1000) is None


@given(st.text(max_size=80), st.integers(0, 2**40))
def test_parse_range_never_fails_and_stays_inside(header: str, size: int) -> None:
    ranges = parse_range(header, size)
    if ranges is None:
        return
    for byte_range in ranges:
        assert 0 <= byte_range.start <= byte_range.end < size
    for before, after in itertools.pairwise(ranges):
        assert before.end + 1 < after.start  # sorted, disjoint, not adjacent


SPEC = st.one_of(
    st.tuples(st.integers(0, 60), st.none()),
    st.tuples(st.integers(0, 60), st.integers(0, 60)).filter(lambda t: t[0] <= t[1]),
    st.tuples(st.none(), st.integers(0, 60)),
)


@given(st.lists(SPEC, min_size=1, max_size=8), st.integers(0, 50))
def test_parse_range_covers_exactly_the_requested_bytes(
    specs: list[tuple[int | None, int | None]], size: int
) -> None:
    parts = [f"{'' if a is None else a}-{'' if b is None else b}" for a, b in specs]
    ranges = parse_range("bytes=" + ", ".join(parts), size)
    assert ranges is not None
    wanted: set[int] = set()
    for first, last in specs:
        if first is None:
            assert last is not None
            wanted |= set(range(max(0, size - last), size))
        else:
            wanted |= set(
                range(first, min(size, (last + 1) if last is not None else size))
            )
    covered = {i for r in ranges for i in range(r.start, r.end + 1)}
    assert covered == wanted


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 20))))
def test_coalesce_keeps_every_byte(pairs: list[tuple[int, int]]) -> None:
    ranges = [ByteRange(a, a + n) for a, n in pairs]
    merged = coalesce(ranges)
    assert {i for r in merged for i in range(r.start, r.end + 1)} == {
        i for r in ranges for i in range(r.start, r.end + 1)
    }
    assert all(a.end + 1 < b.start for a, b in itertools.pairwise(merged))


def test_byte_range_content_range() -> None:
    assert ByteRange(0, 0).content_range(10) == "bytes 0-0/10"
    assert ByteRange(3, 9).length == 7


# -- entity tags and preconditions --------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('"abc"', [EntityTag('"abc"')]),
        ('W/"abc"', [EntityTag('"abc"', weak=True)]),
        (
            ' "a" , W/"b",""',
            [EntityTag('"a"'), EntityTag('"b"', True), EntityTag('""')],
        ),
        ("*", []),
        ("abc", None),
        ('"abc', None),
        ('"a" "b"', None),
        ("", None),
    ],
)
def test_parse_etags(header: str, expected: list[EntityTag] | None) -> None:
    assert parse_etags(header) == expected


@given(st.text(max_size=40))
def test_parse_etags_never_fails(header: str) -> None:
    tags = parse_etags(header)
    assert tags is None or all(tag.opaque.startswith('"') for tag in tags)


ETAG_TEXT = st.text(
    st.characters(min_codepoint=0x23, max_codepoint=0x7E), max_size=10
).map(lambda t: f'"{t}"')


@given(st.lists(st.tuples(ETAG_TEXT, st.booleans()), min_size=1, max_size=5))
def test_parse_etags_round_trips(tags: list[tuple[str, bool]]) -> None:
    entity_tags = [EntityTag(opaque, weak) for opaque, weak in tags]
    assert parse_etags(", ".join(map(str, entity_tags))) == entity_tags


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, None),
        ({"if-match": '"abc"'}, None),
        ({"if-match": '"x", "abc"'}, None),
        ({"if-match": "*"}, None),
        ({"if-match": '"x"'}, 412),
        ({"if-match": 'W/"abc"'}, 412),  # If-Match compares strongly
        ({"if-match": "garbage"}, 412),
        ({"if-unmodified-since": MODIFIED_DATE}, None),
        ({"if-unmodified-since": LATER_DATE}, None),
        ({"if-unmodified-since": EARLIER_DATE}, 412),
        ({"if-unmodified-since": "not a date"}, None),
        # If-Match present: If-Unmodified-Since is not evaluated.
        ({"if-match": '"abc"', "if-unmodified-since": EARLIER_DATE}, None),
        ({"if-none-match": '"abc"'}, 304),
        ({"if-none-match": 'W/"abc"'}, 304),  # If-None-Match compares weakly
        ({"if-none-match": "*"}, 304),
        ({"if-none-match": '"x"'}, None),
        ({"if-modified-since": MODIFIED_DATE}, 304),
        ({"if-modified-since": LATER_DATE}, 304),
        ({"if-modified-since": EARLIER_DATE}, None),
        ({"if-modified-since": "yesterday"}, None),
        # If-None-Match present: If-Modified-Since is not evaluated.
        ({"if-none-match": '"x"', "if-modified-since": MODIFIED_DATE}, None),
        # 412 is decided before 304.
        ({"if-match": '"x"', "if-none-match": '"abc"'}, 412),
    ],
)
def test_precondition_status(headers: dict[str, str], status: int | None) -> None:
    assert precondition_status(headers, VALIDATORS) == status


def test_preconditions_without_validators() -> None:
    none = Validators(None, None)
    assert precondition_status({"if-match": "*"}, none) is None
    assert precondition_status({"if-match": '"abc"'}, none) == 412
    assert precondition_status({"if-unmodified-since": MODIFIED_DATE}, none) == 412
    assert precondition_status({"if-none-match": '"abc"'}, none) is None
    assert precondition_status({"if-none-match": "*"}, none) == 304
    assert precondition_status({"if-modified-since": MODIFIED_DATE}, none) is None


@pytest.mark.parametrize(
    ("value", "holds"),
    [
        (None, True),
        ('"abc"', True),
        ('"x"', False),
        ('W/"abc"', False),  # If-Range compares strongly
        (MODIFIED_DATE, True),
        (LATER_DATE, False),  # a date must equal Last-Modified exactly
        (EARLIER_DATE, False),
        ("garbage", False),
    ],
)
def test_if_range(value: str | None, holds: bool) -> None:
    assert if_range_holds(value, VALIDATORS) is holds


@pytest.mark.parametrize(
    ("headers", "size", "choice"),
    [
        ({}, 10, RangeChoice(200)),
        ({"range": "bytes=0-0"}, 10, RangeChoice(206, ByteRange(0, 0))),
        ({"range": "bytes=-1"}, 10, RangeChoice(206, ByteRange(9, 9))),
        ({"range": "bytes=3-100"}, 10, RangeChoice(206, ByteRange(3, 9))),
        ({"range": "bytes=0-1,5-6"}, 10, RangeChoice(200)),
        ({"range": "bytes=0-4,5-6"}, 10, RangeChoice(206, ByteRange(0, 6))),
        ({"range": "bytes=10-"}, 10, RangeChoice(416)),
        ({"range": "bytes=-0"}, 10, RangeChoice(416)),
        ({"range": "bytes=5-1"}, 10, RangeChoice(200)),
        ({"range": "lines=1-2"}, 10, RangeChoice(200)),
        ({"range": "bytes=0-0"}, 0, RangeChoice(200)),  # an empty file: all of it
        ({"range": "bytes=0-"}, 0, RangeChoice(200)),
        (
            {"range": "bytes=2-3", "if-range": '"abc"'},
            10,
            RangeChoice(206, ByteRange(2, 3)),
        ),
        ({"range": "bytes=2-3", "if-range": '"old"'}, 10, RangeChoice(200)),
        (
            {"range": "bytes=2-3", "if-range": MODIFIED_DATE},
            10,
            RangeChoice(206, ByteRange(2, 3)),
        ),
        ({"range": "bytes=2-3", "if-range": EARLIER_DATE}, 10, RangeChoice(200)),
        ({"range": "bytes=10-", "if-range": '"old"'}, 10, RangeChoice(200)),
    ],
)
def test_select_range(headers: dict[str, str], size: int, choice: RangeChoice) -> None:
    assert select_range(headers, size, VALIDATORS) == choice


# -- what the body is ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "application/pdf"),
        ("dir/photo.JPG", "image/jpeg"),
        ("clip.mp4", "video/mp4"),
        ("notes.txt", "text/plain"),
        ("data.tar.gz", "application/gzip"),  # the bytes, never a Content-Encoding
        ("page.html.gz", "application/gzip"),
        ("logs.txt.bz2", "application/x-bzip"),
        ("no-extension", "application/octet-stream"),
        ("x.unknownext", "application/octet-stream"),
    ],
)
def test_content_type(name: str, expected: str) -> None:
    assert content_type(name) == expected


@pytest.mark.parametrize(
    ("media_type", "inline", "active"),
    [
        ("application/pdf", True, False),
        ("image/png", True, False),
        ("image/svg+xml", False, True),
        ("video/mp4", True, False),
        ("audio/mpeg", True, False),
        ("text/plain", True, False),
        ("text/html", False, True),
        ("application/xhtml+xml", False, True),
        ("text/xml", False, True),
        ("application/xml", False, True),
        ("text/javascript", False, True),
        ("application/octet-stream", False, False),
        ("application/zip", False, False),
        ("text/csv", False, False),
    ],
)
def test_inline_and_active_types(media_type: str, inline: bool, active: bool) -> None:
    assert is_inline(media_type) is inline
    assert is_active(media_type) is active


@pytest.mark.parametrize(
    ("filename", "attachment", "expected"),
    [
        ("report.pdf", False, 'inline; filename="report.pdf"'),
        ("report.pdf", True, 'attachment; filename="report.pdf"'),
        (
            "Café déjà vu.pdf",
            False,
            'inline; filename="Cafe deja vu.pdf"; '
            "filename*=UTF-8''Caf%C3%A9%20d%C3%A9j%C3%A0%20vu.pdf",
        ),
        (
            "报告.pdf",
            True,
            "attachment; filename=\"__.pdf\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A.pdf",
        ),
        (
            'a"b\\c.txt',
            True,
            "attachment; filename=\"a_b_c.txt\"; filename*=UTF-8''a%22b%5Cc.txt",
        ),
        ("a\r\nb.txt", True, 'attachment; filename="ab.txt"'),
        ("\x00\x07", True, 'attachment; filename="download"'),
    ],
)
def test_content_disposition(filename: str, attachment: bool, expected: str) -> None:
    assert content_disposition(filename, attachment=attachment) == expected


@given(st.text(max_size=40), st.booleans())
def test_content_disposition_is_a_safe_header(filename: str, attachment: bool) -> None:
    value = content_disposition(filename, attachment=attachment)
    assert value.isascii()
    assert all(" " <= ch <= "~" for ch in value)  # no CR, LF or other controls
    match = re.fullmatch(
        r"(inline|attachment); filename=\"([^\"\\]*)\"(?:; filename\*=UTF-8''(\S+))?",
        value,
    )
    assert match is not None
    assert match.group(1) == ("attachment" if attachment else "inline")
    assert match.group(2) == ascii_fallback(filename)
    cleaned = "".join(ch for ch in filename if unicodedata.category(ch)[0] != "C")
    if match.group(3) is None:
        assert cleaned in (match.group(2), "")
    else:
        assert unquote(match.group(3), errors="strict") == cleaned
