"""The mbox splitter against MimeKit's ground truth (../shared/corpora/
mimekit/expected: each message's marker, begin and end offsets), LF and
CRLF, and From-line unescaping."""

import json
import os

import pytest
from conftest import ROOT

from store.migrate.mbox import split

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
