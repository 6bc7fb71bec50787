"""Every real message of the corpora is deliverable, stored byte-identical and indexed."""

import hashlib
import json
import os

import pytest
from conftest import corpus, msg_hashes

from store.message import parse_header


def _files(*dirs):
    out = []
    for d in dirs:
        for dp, _s, fs in os.walk(d):
            out.extend(os.path.join(dp, f) for f in sorted(fs) if f != "PROVENANCE.txt")
    return sorted(out)


def test_deliver_spamassassin_and_mimekit(cli, root):
    files = _files(corpus("spamassassin"), corpus("mimekit", "messages"))
    assert len(files) > 200
    r = cli("deliver", "--store-root", root, "--create", "user/joe", *files)
    assert r.code == 0, r.err
    assert r.out.splitlines() == [f"user/joe/INBOX {i}" for i in range(1, len(files) + 1)]
    want = sorted(hashlib.sha1(open(f, "rb").read()).hexdigest() for f in files)
    assert msg_hashes(root) == want
    r = cli("imcheck", "--store-root", root, "-m", "user/joe", "--json")
    assert r.code == 0, r.err
    dump = json.loads(r.out)
    assert [x["uid"] for x in dump["records"]] == list(range(1, len(files) + 1))
    assert dump["header"]["exists"] == len(files) and dump["problems"] == []
    assert [x["size"] for x in dump["records"]] == [os.path.getsize(f) for f in files]
    for uid in (1, len(files) // 2, len(files)):
        assert cli("imcheck", "--store-root", root, "-m", "user/joe", "-c", str(uid)).code == 0


def test_notmuch_maildir_messages_parse(tmp_path):
    for f in _files(corpus("notmuch")):
        data = open(f, "rb").read()
        p = parse_header(data)
        assert 0 <= p.header_size <= len(data)


@pytest.mark.parametrize("data,size,subject", [
    (b"x", 0, None),
    (b"", 0, None),
    (b"Subject: no separator\nFrom: a@b", 31, b"no separator"),
    (b"Subject: crlf\r\nTo: x\r\n\r\nbody", 24, b"crlf"),
    (b"Subject: folded\n\tsecond line\n\nb", 30, b"folded second line"),
    ("Subject: \u65e5\u672c\u8a9e\n\nb".encode("utf-8"), 20, "\u65e5\u672c\u8a9e".encode()),
    (b"Subject: 8bit \xe9\xff\n\nb", 18, b"8bit \xe9\xff"),
    (b"From sender Mon Jan  1 00:00:00 2024\nSubject: mbox\n\nb", 52, b"mbox"),
    (b"Subject: a\nnot a header line\nmore", 11, b"a"),
    (b"Date: garbage\n\n", 15, None),
])
def test_header_parser_on_odd_messages(data, size, subject):
    p = parse_header(data)
    assert p.header_size == size
    assert p.fields.get("subject") == subject


def test_unparsable_date_and_content_type():
    p = parse_header(b"Date: 99 Foo 12345 99:99:99\n"
                     b"Content-Type: Multipart/Mixed; boundary=\"x\"; foo=bar\n\n")
    assert p.sent_date == 0
    assert p.fields["content-type"] == b'multipart/mixed; boundary="x"'


def test_fast_date_parser_agrees_with_email_utils():
    import email.utils

    from store.message import parse_date
    checked = 0
    for f in _files(corpus("spamassassin"), corpus("mimekit"), corpus("notmuch")):
        v = parse_header(open(f, "rb").read()).fields.get("date")
        if not v:
            continue
        try:
            ref = int(email.utils.parsedate_to_datetime(v.decode("latin-1")).timestamp())
        except (TypeError, ValueError, IndexError, OverflowError):
            ref = 0
        assert parse_date(v) == ref, (f, v)
        checked += 1
    assert checked > 400
