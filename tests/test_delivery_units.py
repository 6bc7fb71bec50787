"""The delivery engine's parts on their own: the LMTP DATA reader, group
commit, address parsing, the outcome table and arrival dates."""

import asyncio
import errno
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.config import Config
from store.delivery.address import AddressError, AddressRules, parse
from store.delivery.groupsync import GroupSync
from store.delivery.outcome import NotReadyError, TooBigError, refused
from store.errors import (
    CorruptionError,
    EmptyMessageError,
    LockedError,
    NoSuchMailboxError,
    OverQuotaError,
    SettingError,
)
from store.message import internaldate_of, split_mbox_from
from store.services.lmtpd import read_dot_terminated


def _stuffed(lines: list[bytes]) -> bytes:
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines) \
        + b".\r\n"


async def _read(wire: bytes, limit: int, reader_limit: int = 1 << 16):
    reader = asyncio.StreamReader(limit=reader_limit)
    reader.feed_data(wire + b"QUIT\r\n")
    reader.feed_eof()
    got = await read_dot_terminated(reader, limit)
    return got, await reader.read()


line = st.one_of(st.sampled_from([b"", b".", b"..", b".x", b"a.", b"\r", b"x\r", b". "]),
                 st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")))


@settings(max_examples=300, deadline=None)
@given(st.lists(line, max_size=30), st.sampled_from([16, 64, 1 << 16]))
def test_the_data_reader_undoes_dot_stuffing_and_stops_at_the_dot(lines, reader_limit):
    body = b"".join(ln + b"\r\n" for ln in lines)
    got, rest = asyncio.run(_read(_stuffed(lines), 1 << 20, reader_limit))
    if reader_limit >= len(body) + 8:
        assert got == body
    else:  # more than the reader may buffer without an end marker: refused as too big
        assert got in (body, None)
    assert rest == b"QUIT\r\n"  # never reads past the end of the message


def test_the_data_reader_refuses_too_big_and_keeps_the_session():
    body = [b"x" * 70] * 100
    got, rest = asyncio.run(_read(_stuffed(body), 1000))
    assert got is None and rest == b"QUIT\r\n"
    got, rest = asyncio.run(_read(_stuffed(body), 1000, reader_limit=256))  # overrun path
    assert got is None and rest == b"QUIT\r\n"
    got, rest = asyncio.run(_read(b".\r\n", 1000))
    assert got == b"" and rest == b"QUIT\r\n"


def test_group_commit_shares_syncs_and_reports_failures():
    calls = []

    def flush(path):
        calls.append(path)
        time.sleep(0.01)

    async def main(gs, n):
        return await asyncio.gather(*(gs.sync("/") for _ in range(n)), return_exceptions=True)
    gs = GroupSync(flush)
    assert asyncio.run(main(gs, 50)) == [None] * 50
    assert gs.requests == 50 and 1 <= len(calls) <= 2, calls  # one round, or one more

    def failing(path):
        raise OSError(errno.EIO, "I/O error")
    gs = GroupSync(failing)
    results = asyncio.run(main(gs, 5))
    assert all(isinstance(r, OSError) and r.errno == errno.EIO for r in results)


RULES = AddressRules(frozenset({"example.com"}), foldcase=True, autocreate=False)


@pytest.mark.parametrize("addr,user,detail", [
    ("joe@example.com", "joe", None), ("<Joe@EXAMPLE.com>", "joe", None),
    ("joe+Lists@example.com", "joe", "Lists"),
    ("j.o.e@example.com.", "j.o.e", None)])
def test_addresses_map_to_users(addr, user, detail):
    r = parse(addr, RULES)
    assert (r.user, r.detail) == (user, detail)


@pytest.mark.parametrize("addr,reason", [
    ("joe@example.org", "not-local"), ("joe", "not-local"),
    ("bad address@example.com", "bad-address"),
    ("@example.com", "bad-address"), ("a@b@example.com", "bad-address"),
    (".joe@example.com", "bad-address"), ("", "bad-address")])
def test_addresses_refused(addr, reason):
    with pytest.raises(AddressError) as e:
        parse(addr, RULES)
    assert e.value.reason == reason


@pytest.mark.parametrize("exc,code,enhanced,sysexit", [
    (AddressError("x", reason="unknown-user"), 550, "5.1.1", 67),
    (AddressError("x", reason="bad-address"), 553, "5.1.3", 64),
    (NoSuchMailboxError("x"), 550, "5.1.1", 67),
    (OverQuotaError("x", since=1000), 452, "4.2.2", 75),
    (OverQuotaError("x", since=1000 - 3 * 3600), 552, "5.2.2", 77),
    (LockedError("x"), 451, "4.2.0", 75),
    (NotReadyError("x"), 451, "4.3.0", 75),
    (CorruptionError("x", kind="k"), 451, "4.3.0", 75),
    (OSError(errno.ENOSPC, "full"), 452, "4.3.1", 75),
    (TooBigError("x"), 552, "5.3.4", 65),
    (EmptyMessageError("x"), 554, "5.6.0", 65),
    (SettingError("x"), 451, "4.3.5", 78),
    (RuntimeError("x"), 451, "4.3.0", 70)])
def test_every_error_has_its_reply_and_exit_status(exc, code, enhanced, sysexit):
    out = refused(exc, grace_hours=2, now=1000)
    assert (out.code, out.enhanced, out.sysexit) == (code, enhanced, sysexit)
    assert out.temporary == (code < 500)
    if sysexit not in (70, 78):  # internal and configuration errors: LMTP defers, exit says why
        assert (sysexit == 75) == out.temporary


def test_arrival_dates():
    msg = b"Received: by b; Wed, 2 Dec 2026 10:00:00 +0000\nReceived: by a; 1 Jan 2020 00:00 +0000\n\nx\n"
    assert internaldate_of("received", msg, None) == 1796205600
    assert internaldate_of("1700000000", msg, None) == 1700000000
    assert internaldate_of("2026-12-02T10:00:00+00:00", msg, None) == 1796205600
    assert internaldate_of("Wed, 2 Dec 2026 10:00:00 +0000", msg, None) == 1796205600
    line, rest = split_mbox_from(b"From bob@x Wed Dec  2 10:00:00 2026\n" + msg)
    assert rest == msg and internaldate_of("from", rest, line) == int(
        time.mktime(time.strptime("Wed Dec  2 10:00:00 2026", "%a %b %d %H:%M:%S %Y")))
    for bad in ("from", "tomorrow"):
        with pytest.raises(ValueError):
            internaldate_of(bad, b"Subject: x\n\n", None)


def test_lmtp_settings_are_validated(tmp_path):
    cfg = Config(str(tmp_path), {})
    cfg.save({})
    assert cfg.set("local.lmtp.domains", " Example.COM, mail.example.org ") == \
        "example.com,mail.example.org"
    for name, value in (("local.lmtp.domains", "bad domain"), ("local.lmtp.port", "70000"),
                        ("store.quotawarn", "101"), ("local.lmtp.workers", "0")):
        with pytest.raises(SettingError):
            cfg.set(name, value)


@pytest.mark.parametrize("arg", ["<joe@example.com>", "<joe@example.com> SIZE=100 BODY=8BITMIME",
                                 " <a.b+c@x.y>", "<>", '<"q x"@ex.com>', "<a..b@x>", "joe@x",
                                 "<bad address@example.com>", "<@route:joe@x>", "<joe@[1.2.3.4]>"])
def test_the_fast_address_path_reads_as_aiosmtpd_does(arg):
    from aiosmtpd.smtp import SMTP

    from store.services.lmtpd import _LMTP
    server = _LMTP(object(), max_size=1000)
    assert server._getaddr(arg) == SMTP._getaddr(server, arg)


def test_the_quota_warning_can_be_tried_again_while_its_inbox_is_locked(tmp_path):
    """lmtpd polls a mailbox lock another process holds instead of waiting
    on it: the warning's steps must raise LockedError at once (lock_timeout
    0) and be made afresh for the next try, as a delivery's are."""
    from dataclasses import replace

    from store.db import QUOTA, QuotaEntry
    from store.delivery.agent import Agent, Policy
    from store.mailbox import Store
    from store.mailbox.messages import run_steps
    root = str(tmp_path / "store")
    with Store.init(root) as s:
        s.create("user/joe")
        s.set_quota("user/joe", 10000)  # room for the warnings past 90 %
        s.layout.config.set("local.lmtp.lockwait", "600")  # a wait would show
        agent = Agent(s, Policy.from_config(s.layout.config), via="test")
        out = agent.deliver(b"Subject: big\n\n" + b"x" * 9000, "a@b", [agent.resolve("joe")])[0]
        assert out.ok  # past 90 %: the warning went out; re-arm it for this test
        s.db.write(lambda t: t.put(QUOTA, "user/joe",
                                   replace(t.record(QuotaEntry, "user/joe"), warned=False)))
        inbox, make_steps = agent.quota_warning(out)
        with Store.open(root) as other, other.lock(inbox):  # another holder of the lock
            t0 = time.monotonic()
            with pytest.raises(LockedError):
                next(make_steps(lock_timeout=0))
            assert time.monotonic() - t0 < 300  # not the 600 s of lockwait
        run_steps(make_steps(lock_timeout=0))
        warnings = [r for r in s.read(inbox).records if b"Your mailbox is" in s.message(inbox, r.uid)]
        assert len(warnings) == 2  # the first delivery's, and this one once the lock was free


def test_only_crlf_dot_crlf_ends_the_data():
    wire = b"a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n"  # a bare LF before the dot is no end
    got, rest = asyncio.run(_read(wire, 1000))
    assert got == b"a\n.\r\nMAIL FROM:<x@y>\r\n" and rest == b"QUIT\r\n"
    got, rest = asyncio.run(_read(b"..x\r\n.\r\n", 1000))
    assert got == b".x\r\n" and rest == b"QUIT\r\n"


def test_the_quota_warning_takes_the_administrators_template(tmp_path, caplog):
    """Issue 25: the quota warning's text as a file under config/ (quotawarn.msg)."""
    from store.delivery.agent import warning_message
    d = tmp_path / "config"
    d.mkdir()
    assert b"Your mail uses 90 of the 100 bytes" in warning_message("user/joe", 90, 100, 90,
                                                                     str(d))
    (d / "quotawarn.msg").write_text("From: Postmaster <postmaster@example.com>\n"
                                     "Subject: {root} is {percent}% full\n\n"
                                     "You use {used} of {limit} bytes. {{not a field}}\n")
    got = warning_message("user/joe", 90, 100, 90, str(d))
    assert got == (b"From: Postmaster <postmaster@example.com>\nSubject: user/joe is 90% full\n\n"
                   b"You use 90 of 100 bytes. {not a field}\n")
    (d / "quotawarn.msg").write_text("Subject: {nonsense}\n\nx\n")
    got = warning_message("user/joe", 90, 100, 90, str(d))
    assert b"Your mail uses 90 of the 100 bytes" in got  # the built-in text, and a log line
    assert "quota warning template" in caplog.text and "nonsense" in caplog.text


def test_the_quota_warning_goes_in_when_the_delivery_left_no_room(tmp_path):
    """Issue 25: a delivery that takes the root to 99.9% left no room for
    the warning itself, which was refused by the quota and lost (claimed
    already). The store's own message goes in past the limit."""
    from store.delivery.agent import Agent, Policy
    from store.mailbox import Store
    root = str(tmp_path / "store")
    with Store.init(root) as s:
        s.create("user/joe")
        s.set_quota("user/joe", 10000)
        agent = Agent(s, Policy.from_config(s.layout.config), via="test")
        out = agent.deliver(b"Subject: big\n\n" + b"x" * 9930, "a@b", [agent.resolve("joe")])[0]
        assert out.ok
        texts = [s.message("user/joe", r.uid) for r in s.read("user/joe").records]
        assert len(texts) == 2 and b"Your mailbox is" in texts[1], texts[1][:200]
        assert s.quotas("user/joe")[0]["used_bytes"] > 10000  # past the limit, by the warning
