"""FETCH responses, written by imapd itself.

Twisted's server writes each message's response through a coroutine of its
own scheduler, a Deferred and a write per message: 40 µs a message before
any work, 4 s for `UID FETCH 1:* (FLAGS)` of 100,000 messages. Here the
responses are rendered synchronously in runs of CHUNK_MESSAGES (or
CHUNK_BYTES), one write per run, as a cooperative task that the
connection pauses while its send buffer is full (a streaming producer), so
a FETCH of a large mailbox neither holds up the other sessions nor piles
its output up in memory.

FLAGS, UID and INTERNALDATE come from the index; ENVELOPE from the
message's header alone; the rest from the message bytes."""

from __future__ import annotations

import time
from collections.abc import Iterator

from twisted.internet import task
from twisted.internet.interfaces import IPushProducer
from twisted.mail import imap4
from zope.interface import implementer

from .imapbox import Mailbox, Message
from .imapstructure import envelope, fetch_section, sexp, structure

P = imap4._FetchParser
CHUNK_MESSAGES = 1000
CHUNK_BYTES = 256 * 1024
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n%s" % (len(data), data)


def internaldate(t: int) -> bytes:
    g = time.gmtime(t)
    return b'"%02d-%s-%d %02d:%02d:%02d +0000"' % (g.tm_mday, _MONTHS[g.tm_mon - 1].encode(),
                                                  g.tm_year, g.tm_hour, g.tm_min, g.tm_sec)


def envelope_item(m: Message) -> bytes:
    return b"ENVELOPE " + sexp(envelope(m.header_bytes()))


def render(box: Mailbox, seq: int, msg: Message, query: list, uid: bool) -> bytes:
    """One `* n FETCH (...)` response."""
    out = []
    rec = msg.rec
    for item in query:
        if isinstance(item, P.Flags):
            out.append(b"FLAGS (" + " ".join(box.flags_of(rec)).encode() + b")")
        elif isinstance(item, P.UID):
            out.append(b"UID %d" % rec.uid)
        elif isinstance(item, P.InternalDate):
            out.append(b"INTERNALDATE " + internaldate(rec.internaldate))
        elif isinstance(item, P.RFC822Size):
            out.append(b"RFC822.SIZE %d" % msg.getSize())
        elif isinstance(item, P.Envelope):
            out.append(envelope_item(msg))
        elif isinstance(item, P.BodyStructure):
            out.append(b"BODYSTRUCTURE " + sexp(structure(msg.parsed(), True)))
        elif isinstance(item, P.Body):
            if item.header or item.text or item.mime or item.empty or item.part:
                out.append(fetch_section(msg.wire, msg.parsed, item))
            else:  # BODY alone: the structure
                out.append(b"BODY " + sexp(structure(msg.parsed(), False)))
        elif isinstance(item, P.RFC822):
            out.append(b"RFC822 " + _literal(msg.wire))
        elif isinstance(item, P.RFC822Header):
            out.append(b"RFC822.HEADER " + _literal(msg.header_bytes()))
        elif isinstance(item, P.RFC822Text):
            out.append(b"RFC822.TEXT " + _literal(msg.body_bytes()))
    if uid and not any(isinstance(i, P.UID) for i in query):
        out.append(b"UID %d" % rec.uid)
    return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(out))


_INDEX_ONLY = (P.Flags, P.UID, P.InternalDate)


def render_index_only(box: Mailbox, seq: int, rec, query: list, uid: bool) -> bytes:
    """render() for FLAGS, UID and INTERNALDATE: no Message, memoised flags."""
    out = []
    for item in query:
        if isinstance(item, P.Flags):
            out.append(box.flag_bytes(rec))
        elif isinstance(item, P.UID):
            out.append(b"UID %d" % rec.uid)
        else:
            out.append(b"INTERNALDATE " + internaldate(rec.internaldate))
    if uid and not any(isinstance(i, P.UID) for i in query):
        out.append(b"UID %d" % rec.uid)
    return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(out))


@implementer(IPushProducer)
class _Pacer:
    """The cooperative task as the transport's producer: paused while the
    connection's send buffer is full."""

    def __init__(self, coop: task.CooperativeTask):
        self.coop = coop

    def pauseProducing(self):
        self.coop.pause()

    def resumeProducing(self):
        self.coop.resume()

    def stopProducing(self):
        self.coop.stop()


def send(server, tag: bytes, box: Mailbox, targets, query: list, uid: bool) -> None:
    """Write the responses of `targets` ((seq, record) pairs), then the
    tagged OK; commands pipelined meanwhile wait (Twisted's `blocked`)."""
    server.blocked = []
    transport = server.transport

    index_only = all(isinstance(i, _INDEX_ONLY) for i in query)

    def runs() -> Iterator[None]:
        buf, size = [], 0
        for seq, rec in targets:
            line = render_index_only(box, seq, rec, query, uid) if index_only else \
                render(box, seq, Message(box, rec), query, uid)
            buf.append(line)
            size += len(line)
            if len(buf) >= CHUNK_MESSAGES or size >= CHUNK_BYTES:
                transport.write(b"".join(buf))
                buf, size = [], 0
                yield None
        if buf:
            transport.write(b"".join(buf))

    coop = task.cooperate(runs())
    transport.registerProducer(_Pacer(coop), True)

    def done(_):
        transport.unregisterProducer()
        server.sendPositiveResponse(tag, b"FETCH completed")
        server._unblock()

    def failed(f):
        transport.unregisterProducer()
        if f.check(task.TaskStopped):  # the connection went away
            return None
        server.sendBadResponse(tag, b"FETCH failed: " + str(f.value).encode())
        server._unblock()
        return None
    coop.whenDone().addCallbacks(done, failed)
