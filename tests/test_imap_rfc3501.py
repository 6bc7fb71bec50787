"""An RFC 3501 conformance pass: the commands of the RFC's examples
(sections 6 and 8), sent as written there, and the shape of each response
checked against what the RFC shows."""

import re
import socket

import pytest
from lmtp_harness import start_service, start_stored, stop

from store import accounts
from store.layout import Layout
from store.mailbox import Store

PLAIN = (b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\nFrom: Terry Gray <gray@cac.washington.edu>\n"
         b"Subject: IMAP4rev1 WG mtg summary and minutes\nTo: imap@cac.washington.edu\n"
         b"Message-Id: <B27397-0100000@cac.washington.edu>\nMIME-Version: 1.0\n"
         b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n\nHello Joe, do you think we can meet at "
         b"3:30 tomorrow?\n")
MULTI = (b"From: Fred Foobar <foobar@Blurdybloop.COM>\nSubject: afternoon meeting\n"
         b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\nMIME-Version: 1.0\n"
         b"Content-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\n"
         b"part one\n--XX\nContent-Type: text/html\n\n<p>part two</p>\n--XX--\n")


class Session:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), 10)
        self.f = self.s.makefile("rb")
        self.greeting = self.f.readline()

    def send(self, tag: str, line: str, literal: bytes | None = None) -> list[bytes]:
        """The untagged lines and the tagged one (literals folded in)."""
        if literal is None:
            self.s.sendall(f"{tag} {line}\r\n".encode())
        else:
            self.s.sendall(f"{tag} {line} {{{len(literal)}}}\r\n".encode())
            assert self.f.readline().startswith(b"+")
            self.s.sendall(literal + b"\r\n")
        out = []
        while True:
            got = self.f.readline()
            m = re.search(rb"\{(\d+)\}\r\n$", got)
            if m:
                got += self.f.read(int(m.group(1))) + self.f.readline()
            out.append(got)
            if got.startswith(tag.encode() + b" "):
                return out


@pytest.fixture
def s(tmp_path):
    root = str(tmp_path / "store")
    with Store.init(root) as st:
        st.create("user/joe")
        st.create("user/joe/blurdybloop")
        st.append("user/joe/blurdybloop", PLAIN)
        st.append("user/joe/blurdybloop", MULTI)
        for i in range(3):
            st.append("user/joe/blurdybloop", b"From: Smith <smith@example.org>\n"
                      b"Subject: n%d\nDate: Tue, 1 Mar 1994 10:00:00 +0000\n\ntext %d\n" % (i, i))
        st.store_flags("user/joe/blurdybloop", [3], 4, [], "add")  # \Flagged
    accounts.set_password(Layout.open(root), "joe", "pw")
    stored = start_stored(root)
    proc, port = start_service("imapd", root)
    sess = Session(port)
    yield sess
    sess.s.close()
    proc.terminate()
    proc.wait(30)
    stop(stored)


def ok(lines):
    assert lines[-1].split()[1] == b"OK", lines
    return lines


def test_rfc3501_examples(s):
    assert s.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1")
    caps = ok(s.send("abcd", "CAPABILITY"))[0]  # 6.1.1
    assert caps.startswith(b"* CAPABILITY IMAP4rev1") and b"AUTH=PLAIN" in caps
    ok(s.send("a002", "NOOP"))  # 6.1.2
    ok(s.send("a001", "LOGIN joe pw"))  # 6.2.3 (SMITH SESAME there)
    r = ok(s.send("A142", "SELECT blurdybloop"))  # 6.3.1
    text = b"".join(r)
    for shape in (rb"\* 5 EXISTS", rb"\* 5 RECENT", rb"\* OK \[UNSEEN 1\]",
                  rb"\* OK \[UIDVALIDITY \d+\]", rb"\* OK \[UIDNEXT 6\]",
                  rb"\* FLAGS \(\\Seen \\Answered \\Flagged \\Deleted \\Draft\)",
                  rb"\* OK \[PERMANENTFLAGS \([^)]*\\Deleted[^)]*\\\*\)\]",
                  rb"A142 OK \[READ-WRITE\] SELECT completed"):
        assert re.search(shape, text), (shape, text)
    r = ok(s.send("A932", "EXAMINE blurdybloop"))  # 6.3.2
    assert re.search(rb"OK \[PERMANENTFLAGS \(\)\]", b"".join(r)) and b"[READ-ONLY]" in r[-1]
    ok(s.send("A003", "CREATE owatagusiam/"))  # 6.3.3
    ok(s.send("A004", "CREATE owatagusiam/blurdybloop"))
    ok(s.send("A682", 'LIST "" *'))
    r = ok(s.send("A683", "DELETE owatagusiam/blurdybloop"))  # 6.3.4
    r = s.send("A684", "DELETE foo")
    assert r[-1].startswith(b"A684 NO")
    ok(s.send("A685", "CREATE foo/bar"))
    ok(s.send("A686", "RENAME foo/bar zowie"))  # 6.3.5
    r = ok(s.send("A687", 'LIST "" *'))
    names = [x.rsplit(b" ", 1)[1].strip().strip(b'"') for x in r[:-1]]
    assert b"zowie" in names and b"foo/bar" not in names
    ok(s.send("A002", "SUBSCRIBE #news.comp.mail.mime"))  # 6.3.6 (need not exist)
    ok(s.send("A003", "UNSUBSCRIBE #news.comp.mail.mime"))  # 6.3.7
    r = ok(s.send("A101", 'LIST "" ""'))  # 6.3.8: the delimiter and the root
    assert r[0].strip() == b'* LIST (\\Noselect) "/" ""'
    r = ok(s.send("A202", 'LIST "" %'))
    assert any(x.rstrip().endswith(b'"INBOX"') for x in r)
    ok(s.send("A002", "SUBSCRIBE blurdybloop"))
    r = ok(s.send("A002", 'LSUB "" *'))  # 6.3.9
    assert any(b'"blurdybloop"' in x for x in r[:-1])
    r = ok(s.send("A042", "STATUS blurdybloop (UIDNEXT MESSAGES)"))  # 6.3.10
    assert re.match(rb'\* STATUS "?blurdybloop"? \((UIDNEXT 6 MESSAGES 5|MESSAGES 5 UIDNEXT 6)\)',
                    r[0]), r
    msg = (b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar "
           b"<foobar@Blurdybloop.COM>\r\nSubject: afternoon meeting\r\nTo: mooch@owatagu.siam.edu"
           b"\r\nMessage-Id: <B27397-0100000@Blurdybloop.COM>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\nHello Joe, do you think we can "
           b"meet at 3:30 tomorrow?\r\n")
    r = s.send("A003", "APPEND saved-messages (\\Seen)", msg)  # 6.3.11
    assert r[-1].startswith(b"A003 NO [TRYCREATE]")
    ok(s.send("A004", "CREATE saved-messages"))
    r = ok(s.send("A005", "APPEND saved-messages (\\Seen)", msg))
    assert b"[APPENDUID" in r[-1]
    r = ok(s.send("A006", 'LIST "" %'))
    assert not any(b"owatagusiam/" in x for x in r)  # % stops at the delimiter
    ok(s.send("A004", "SELECT blurdybloop"))
    ok(s.send("FXXZ", "CHECK"))  # 6.4.1
    r = ok(s.send("A202", "STORE 2:4 +FLAGS (\\Deleted)"))  # 6.4.6
    assert [x.split(b" FETCH")[0] for x in r[:-1]] == [b"* 2", b"* 3", b"* 4"]
    assert b"\\Deleted" in r[0] and b"\\Flagged" in r[1]
    r = ok(s.send("A203", "SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\""))  # 6.4.4
    assert r[0].strip() == b"* SEARCH"  # the flagged one is from Smith
    r = ok(s.send("A204", "SEARCH DELETED FROM \"Smith\""))
    assert r[0].strip() == b"* SEARCH 3 4"
    r = ok(s.send("A285", 'SEARCH TEXT "string not in mailbox"'))
    assert r[0].strip() == b"* SEARCH"
    r = ok(s.send("A654", "FETCH 1 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])"))  # 6.4.5
    assert r[0].strip() == b"* 1 FETCH (FLAGS (\\Seen))"  # set by the fetch: told first
    assert re.match(rb"\* 1 FETCH \(FLAGS \(\\Seen\) BODY\[HEADER\.FIELDS \(DATE FROM\)\] "
                    rb"\{\d+\}", r[1], re.I), r[1]
    assert b"Date: Wed, 17 Jul 1996" in r[1] and b"Subject" not in r[1]
    r = ok(s.send("A655", "FETCH 1 ALL"))
    assert b"ENVELOPE (" in r[0] and b"INTERNALDATE" in r[0] and b"RFC822.SIZE" in r[0]
    assert b'"IMAP4rev1 WG mtg summary and minutes"' in r[0]
    r = ok(s.send("A656", "FETCH 2 (BODYSTRUCTURE)"))
    assert re.search(rb'BODYSTRUCTURE \(\("text" "plain".*\)\("text" "html".*\) "mixed"', r[0],
                     re.I), r[0]
    r = ok(s.send("A657", "FETCH 2 (BODY.PEEK[2])"))
    assert b"<p>part two</p>" in r[0]
    r = ok(s.send("A658", "FETCH 1 (BODY.PEEK[TEXT]<0.10>)"))
    assert re.search(rb"BODY\[TEXT\]<0> \{10\}\r\nHello Joe,", r[0]), r[0]
    ok(s.send("A003", "CREATE MEETING"))
    r = ok(s.send("A003", "COPY 2:4 MEETING"))  # 6.4.7
    assert b"[COPYUID" in r[-1]
    r = ok(s.send("A999", "UID FETCH 1:* FLAGS"))  # 6.4.8
    assert all(re.match(rb"\* \d FETCH \(FLAGS \(.*\) UID \d\)", x) for x in r[:-1]), r
    r = ok(s.send("A202", "EXPUNGE"))  # 6.4.3
    assert sorted(x.strip() for x in r[:-1]) == [b"* 2 EXPUNGE", b"* 3 EXPUNGE", b"* 4 EXPUNGE"]
    ok(s.send("A341", "CLOSE"))  # 6.4.2
    r = s.send("A023", "LOGOUT")  # 6.1.3
    assert r[0].startswith(b"* BYE") and r[-1].startswith(b"A023 OK")


def test_search_keys(s):
    ok(s.send("a1", "LOGIN joe pw"))
    ok(s.send("a2", "SELECT blurdybloop"))
    ok(s.send("a3", "STORE 4 +FLAGS ($Important \\Seen)"))

    def search(q):
        r = ok(s.send("q", f"SEARCH {q}"))
        return [int(x) for x in r[0].split()[2:]]
    assert search("ALL") == [1, 2, 3, 4, 5]
    assert search("KEYWORD $important") == [4] and search("UNKEYWORD $Important") == [1, 2, 3, 5]
    assert search("SEEN") == [4] and search("UNSEEN") == [1, 2, 3, 5]
    assert search("NEW") == [1, 2, 3, 5] and search("RECENT") == [1, 2, 3, 4, 5]
    assert search("OR FLAGGED KEYWORD $Important") == [3, 4]
    assert search("2:3,5") == [2, 3, 5] and search("UID 4:*") == [4, 5]
    assert search('HEADER Message-Id "B27397"') == [1]
    assert search('TEXT "summary and minutes"') == [1]  # in the header: TEXT covers it
    assert search('BODY "part two"') == [2] and search('BODY "summary"') == []
    assert search('SUBJECT "N1"') == [4] and search('FROM "smith" NOT SUBJECT n0') == [4, 5]
    assert search("SENTBEFORE 1-Jan-1995") == [2, 3, 4, 5] and search("SENTON 7-Feb-1994") == [2]
    assert search("LARGER 200") == [1, 2] and search("SMALLER 100") == [3, 4, 5]
    assert search("(SEEN FLAGGED) OR 1 2") == []
    r = ok(s.send("u", "UID SEARCH KEYWORD $Important"))
    assert r[0].strip() == b"* SEARCH 4"
    r = s.send("b", "SEARCH FOOBAR")
    assert r[-1].startswith(b"b BAD")
