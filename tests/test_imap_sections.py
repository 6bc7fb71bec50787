"""FETCH BODY[section]<partial> and BODYSTRUCTURE against hand-worked
answers for a nested message (RFC 3501 6.4.5's section numbering)."""

import email

from twisted.mail.imap4 import _FetchParser

from store.message import to_crlf
from store.services.imapstructure import fetch_section, sexp, structure

NESTED = to_crlf(b"""From: a@example.org
Subject: outer
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="OUTER"

--OUTER
Content-Type: text/plain; charset=utf-8

first part
--OUTER
Content-Type: message/rfc822

From: b@example.org
Subject: inner
Content-Type: multipart/alternative; boundary=In

--In
Content-Type: text/plain

inner text
--In
Content-Type: text/html

<b>inner</b>
--In--
--OUTER--
""")


def fetch(item: str, wire: bytes = NESTED) -> bytes:
    p = _FetchParser()
    p.parseString(item.encode())
    return fetch_section(wire, lambda: email.message_from_bytes(wire), p.result[0])


def test_sections_of_a_nested_message():
    # the CRLF before a boundary belongs to the boundary (RFC 2046 5.1.1)
    assert fetch("BODY[1]") == b"BODY[1] {10}\r\nfirst part"
    assert fetch("BODY[1.MIME]") == (b"BODY[1.MIME] {43}\r\n"
                                     b"Content-Type: text/plain; charset=utf-8\r\n\r\n")
    assert fetch("BODY[2]").startswith(b"BODY[2] {190}\r\nFrom: b@example.org\r\n")
    assert fetch("BODY[2.HEADER.FIELDS (SUBJECT)]") == (b"BODY[2.HEADER.FIELDS (SUBJECT)] {18}"
                                                        b"\r\nSubject: inner\r\n\r\n")
    assert fetch("BODY[2.1]") == b"BODY[2.1] {10}\r\ninner text"
    assert fetch("BODY[2.2]") == b"BODY[2.2] {12}\r\n<b>inner</b>"
    assert fetch("BODY[HEADER.FIELDS.NOT (FROM MIME-VERSION CONTENT-TYPE)]") == (
        b"BODY[HEADER.FIELDS.NOT (FROM MIME-VERSION CONTENT-TYPE)] {18}\r\nSubject: outer\r\n\r\n")
    assert fetch("BODY[3]") == b"BODY[3] {0}\r\n"
    assert fetch("BODY[]<6.4>") == b"BODY[]<6> {4}\r\na@ex"
    assert fetch("BODY[]<100000.10>") == b"BODY[]<100000> {0}\r\n"
    single = b"Subject: s\r\n\r\nonly\r\n"
    assert fetch("BODY[1]", single) == b"BODY[1] {6}\r\nonly\r\n"
    assert fetch("BODY[TEXT]", single) == b"BODY[TEXT] {6}\r\nonly\r\n"
    assert fetch("BODY[HEADER]", single) == b"BODY[HEADER] {14}\r\nSubject: s\r\n\r\n"


def test_bodystructure_of_a_nested_message():
    got = sexp(structure(email.message_from_bytes(NESTED), True))
    assert got.startswith(b'(("text" "plain" ("CHARSET" "utf-8") NIL NIL "7BIT" 10 1 NIL NIL NIL '
                          b'NIL)("message" "rfc822" NIL NIL NIL "7BIT" 190 (NIL "inner" ')
    assert b'(("text" "plain" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL)' \
           b'("text" "html" ("CHARSET" "us-ascii") NIL NIL "7BIT" 12 1 NIL NIL NIL NIL) ' \
           b'"alternative" ("boundary" "In") NIL NIL NIL) 13 NIL NIL NIL NIL)' in got
    assert got.endswith(b' "mixed" ("boundary" "OUTER") NIL NIL NIL)')
    assert b'"inner"' in got  # the envelope of the message/rfc822 part
