"""The fast header parser agrees with the reference (regex) parser: on every
corpus message and on generated headers full of the awkward cases."""

import os

from conftest import ROOT, corpus
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_parser import reference_fields

from store.message import CACHE_FIELDS, parse_header

NAMES = list(CACHE_FIELDS) + ["received", "x-date", "fromage", "tox", "dates", "reply-to"]


def _agree(data: bytes) -> None:
    p = parse_header(data)
    assert (p.header_size, p.fields) == reference_fields(data), data[:300]


def test_agrees_on_every_corpus_message():
    n = 0
    for d in (corpus("spamassassin"), corpus("mimekit"), corpus("notmuch")):
        for dp, _s, fs in os.walk(d):
            for f in fs:
                with open(os.path.join(dp, f), "rb") as fh:
                    _agree(fh.read())
                n += 1
    assert n > 500


@st.composite
def headers(draw) -> bytes:
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    lines = []
    if draw(st.booleans()):
        lines.append(b"From someone Mon Jan  1 00:00:00 2024")
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 9))
        if kind == 0:  # a continuation line
            lines.append(draw(st.sampled_from([b" ", b"\t"])) + draw(st.binary(max_size=20))
                         .replace(b"\n", b""))
        elif kind == 1:  # something that is not a header line
            lines.append(draw(st.binary(max_size=20)).replace(b"\n", b""))
        else:
            name = draw(st.sampled_from(NAMES))
            name = "".join(c.upper() if draw(st.booleans()) else c for c in name).encode()
            ws = draw(st.sampled_from([b"", b"", b" ", b"\t ", b"x"]))
            value = draw(st.binary(max_size=30)).replace(b"\n", b"")
            lines.append(name + ws + b":" + value)
    body = draw(st.sampled_from([b"", eol + b"body" + eol, b"\nSubject: after the header\n"]))
    return eol.join(lines) + (eol if lines and draw(st.booleans()) else b"") + body


@settings(max_examples=600, deadline=None)
@given(headers())
def test_agrees_on_generated_headers(data):
    _agree(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_agrees_on_random_bytes(data):
    _agree(data)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([b"text/plain", b" Multipart/Mixed ", b"", b";", b"=", b" ",
                                 b"charset", b"CharSet", b"boundary", b"\"b\"", b"x=y", b"\t"]),
                max_size=10))
def test_content_type_summary_agrees(parts):
    from reference_parser import reference_content_type

    from store.message import content_type_summary
    value = b"".join(parts)
    assert content_type_summary(value) == reference_content_type(value)


def test_a_date_without_a_zone_is_utc_whatever_the_processes_tz():
    import subprocess
    import sys
    code = ("from store.message import parse_date; "
            "print(parse_date(b'Mon, 5 Feb 2024 10:00:00'), parse_date(b'5 Feb 2024 10:00 -0000'))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**__import__("os").environ, "TZ": tz}, cwd=ROOT).stdout
            for tz in ("UTC", "America/New_York", "Asia/Tokyo")}
    assert outs == {"1707127200 1707127200\n"}


def test_an_impossible_date_is_no_date():
    from store.message import parse_date
    assert parse_date(b"Sat, 31 Feb 2024 10:00:00 +0000") == 0
    assert parse_date(b"31 Apr 2024 10:00 +0100") == 0
    assert parse_date(b"29 Feb 2023 10:00:00 +0000") == 0
    assert parse_date(b"29 Feb 2024 10:00:00 +0000") == 1709200800
    assert parse_date(b"31 Dec 2024 23:59:59 +0000") == 1735689599
