"""The fast header parser agrees with the reference (regex) parser: on every
corpus message and on generated headers full of the awkward cases."""

import os

from conftest import corpus
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
