"""The mbox splitter against MimeKit's ground truth (../shared/corpora/
mimekit/expected: each message's marker, begin and end offsets), LF and
CRLF, and From-line unescaping."""

import json
import os

import pytest
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from store.migrate.mbox import entry, from_line_date, separator, split, take_status

CORPUS = os.path.join(ROOT, "..", "shared", "corpora", "mimekit")
needs_corpus = pytest.mark.skipif(not os.path.isdir(CORPUS), reason="../shared/corpora absent")


def offsets(raw):
    return [(m.marker_offset, m.begin, m.end) for m in split(raw)]


@needs_corpus
@pytest.mark.parametrize("name,variant", [("issue1189", "unix"), ("content-length", "unix"),
                                          ("content-length", "dos")])
def test_split_as_mimekit_says(name, variant):
    raw = open(os.path.join(CORPUS, "mbox", f"{name}.mbox.txt"), "rb").read()
    if variant == "dos":
        raw = raw.replace(b"\n", b"\r\n")
    want = [(m["mboxMarkerOffset"], m["beginOffset"], m["endOffset"]) for m in json.load(
        open(os.path.join(CORPUS, "expected", f"{name}.{variant}-offsets.json")))]
    assert offsets(raw) == want


def test_content_length_keeps_a_from_line_in_the_body():
    body = b"line\nFrom here on it is the body\n"
    raw = (b"From a@b Thu Dec  3 10:00:00 2026\nSubject: one\nContent-Length: %d\n\n" % len(body)
           + body + b"From c@d Thu Dec  3 10:01:00 2026\nSubject: two\n\nx\n")
    msgs = list(split(raw))
    assert len(msgs) == 2 and msgs[0].trusted_length
    assert msgs[0].data(raw).endswith(b"From here on it is the body")  # the separator is not in it
    assert msgs[1].data(raw) == b"Subject: two\n\nx\n"


def test_escaped_from_lines_lose_one_quote():
    raw = (b"From a@b Thu Dec  3 10:00:00 2026\nSubject: s\n\n>From the start\n>>From deeper\n"
           b"\nFrom c@d Thu Dec  3 10:01:00 2026\nSubject: t\n\nx\n")
    first, second = split(raw)
    assert first.data(raw) == b"Subject: s\n\nFrom the start\n>From deeper\n"
    assert first.from_line == b"From a@b Thu Dec  3 10:00:00 2026"
    assert second.data(raw) == b"Subject: t\n\nx\n"


@needs_corpus
def test_a_leading_byte_order_mark_is_skipped():
    raw = open(os.path.join(CORPUS, "mbox", "unmunged.mbox.txt"), "rb").read()
    assert raw.startswith(b"\xef\xbb\xbfFrom ")
    msgs = list(split(raw))
    assert msgs[0].marker_offset == 3 and msgs[0].data(raw).startswith(b"From: Jeffrey")


def test_not_an_mbox():
    with pytest.raises(ValueError, match="not an mbox"):
        list(split(b"Subject: plain message\n\nbody\n"))


# -- mboxrd written and read back (imsexport's entries, imsimport's reader) ----------

_LINES = st.lists(st.sampled_from([b"From here", b">From x", b">>From y", b"From", b"text",
                                   b"", b"\r", b" From z", b"Subject: s", b"\xff\x00"]),
                  min_size=1, max_size=8)
_ENDS = st.sampled_from([b"\n", b"\r\n", b""])


@st.composite
def messages(draw):
    ends = draw(_ENDS)
    body = b"\n".join(draw(_LINES)) + ends
    return b"Subject: m\n\n" + body if draw(st.booleans()) else body or b"x"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(messages(), st.integers(0, 31), st.sampled_from([[], ["$Junk"],
                                                                             ["a", "b"]]),
                          st.integers(0, 2**31)), min_size=1, max_size=5))
def test_mboxrd_entries_read_back_as_written(items):
    """Any messages (From lines, >From lines, CR, CRLF, no final line end):
    what the reader gives back is each message, its flags, keywords and date."""
    raw = b""
    for i, (data, flags, kws, when) in enumerate(items):
        raw += (separator(items[i - 1][0]) if i else b"") + entry(data, "a@b", when, flags, kws)
    got = list(split(raw))
    assert len(got) == len(items)
    for part, (data, flags, kws, when) in zip(got, items, strict=True):
        back, meta = take_status(part.data(raw))
        assert back == data
        assert (meta.flags, list(meta.keywords)) == (flags, kws)
        assert from_line_date(part.from_line) == when
