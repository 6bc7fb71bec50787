#!/usr/bin/env python3
"""Deterministic store builder: N users x folders x messages.

Same seed, same arguments => the same messages, UIDs, flags and internal
dates. Messages are synthetic with a realistic MIME mix (plain, HTML
alternative, attachments, 8-bit and encoded-word headers) and a size spread
of roughly 1-50 KB, or taken from a directory of real messages (--source).

    python tools/build_store.py --root /tmp/demo --users 10 --folders 3 --messages 20
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from store.index import FLAG_ANSWERED, FLAG_FLAGGED, FLAG_SEEN  # noqa: E402
from store.mailbox import Store  # noqa: E402

EPOCH = 1_700_000_000
WORDS = ("store index message quota folder snapshot daemon repair header cache mailbox "
         "partition delivery server user admin report weekly meeting invoice release").split()
FOLDERS = ("Sent", "Drafts", "Archive", "Lists", "Projects", "Trash")


def _text(rng: random.Random, nbytes: int) -> str:
    out, n = [], 0
    while n < nbytes:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))
        out.append(line)
        n += len(line) + 1
    return "\n".join(out)


def synth_message(rng: random.Random, i: int, user: str) -> bytes:
    size = int(min(50_000, max(1_000, rng.lognormvariate(8.6, 0.9))))
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(EPOCH - rng.randint(0, 10**8)))
    subj = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7)))
    if rng.random() < 0.1:
        subj = "=?UTF-8?B?" + base64.b64encode("Grüße ".encode() + subj.encode()).decode() + "?="
    sender = f"{rng.choice(WORDS)}{rng.randint(1, 99)}@example.org"
    head = (f"From: {sender}\nTo: {user}@example.com\nDate: {date}\nSubject: {subj}\n"
            f"Message-ID: <{i}.{rng.getrandbits(48):x}@example.org>\nMIME-Version: 1.0\n")
    kind = rng.random()
    if kind < 0.55:
        return (head + "Content-Type: text/plain; charset=us-ascii\n\n" + _text(rng, size)).encode()
    boundary = f"=_b{rng.getrandbits(40):x}"
    if kind < 0.85:
        t = _text(rng, size // 2)
        body = (f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n{t}\n"
                f"--{boundary}\nContent-Type: text/html; charset=utf-8\n\n<html><body><p>{t}</p>"
                f"</body></html>\n--{boundary}--\n")
        return (head + f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'
                + body).encode()
    blob = base64.encodebytes(rng.randbytes(size * 3 // 4)).decode()
    body = (f"--{boundary}\nContent-Type: text/plain; charset=us-ascii\n\n{_text(rng, 300)}\n"
            f"--{boundary}\nContent-Type: application/pdf; name=doc{i}.pdf\n"
            f"Content-Transfer-Encoding: base64\n\n{blob}--{boundary}--\n")
    return (head + f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n' + body).encode()


def source_messages(path: str) -> list[bytes]:
    files = sorted(os.path.join(d, f) for d, _s, fs in os.walk(path) for f in fs)
    out = []
    for f in files:
        with open(f, "rb") as fh:
            out.append(fh.read())
    return out


def mailboxes(users: int, folders: int):
    """(user, mailbox) for user0000...: INBOX and `folders` more (Sent,
    Drafts, ..., then Sent1, Drafts1, ...)."""
    for u in range(users):
        user = f"user{u:04d}"
        yield user, f"user/{user}"
        for f in range(folders):
            yield user, (f"user/{user}/{FOLDERS[f % len(FOLDERS)]}"
                         + (f"{f // len(FOLDERS)}" if f >= len(FOLDERS) else ""))


def build(root: str, users: int, folders: int, messages: int, seed: int = 1,
          source: str | None = None) -> dict:
    """Build a store; returns counts. `messages` is per mailbox."""
    rng = random.Random(seed)
    pool = source_messages(source) if source else None
    store = Store.init(root)
    total = nbytes = 0
    with store:
        for user, name in mailboxes(users, folders):
            store.create(name)
            datas = [rng.choice(pool) if pool else synth_message(rng, total + k, user)
                     for k in range(messages)]
            flag_choices = [rng.choice((0, FLAG_SEEN, FLAG_SEEN, FLAG_SEEN | FLAG_ANSWERED,
                                        FLAG_FLAGGED)) for _ in datas]
            for flags in sorted(set(flag_choices)):
                group = [d for d, f in zip(datas, flag_choices, strict=True) if f == flags]
                store.append_many(name, group, flags=flags,
                                  internaldate=EPOCH + total)
            total += len(datas)
            nbytes += sum(map(len, datas))
    return {"mailboxes": users * (folders + 1), "messages": total, "bytes": nbytes}


def build_linked(root: str, users: int, folders: int, messages: int, pool: int, seed: int = 1,
                 jobs: int = 2) -> dict:
    """A big store fast, for memory and scale runs: the mailboxes are created
    through the API, their message files are hard links into a pool of
    `pool` synthetic messages, and the indexes are written by reconstruct's
    full rebuild (the engine, in-process). Flags are all clear."""
    from store.mailbox import message_path
    from store.reconstruct.runner import Options, reconstruct_mailboxes

    rng = random.Random(seed)
    store = Store.init(root)
    pool_dir = os.path.join(root, "pool")
    os.makedirs(pool_dir, exist_ok=True)
    sources = []
    for i in range(pool):
        path = os.path.join(pool_dir, f"{i}.eml")
        with open(path, "wb") as f:
            f.write(synth_message(rng, i, "pool"))
        sources.append(path)
    total = 0
    with store:
        for _user, name in mailboxes(users, folders):
            store.create(name)
            mdir = store.mailbox_dir(name)
            for uid in range(1, messages + 1):
                dst = message_path(mdir, uid)
                if uid % 1000 in (0, 1):
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.link(sources[(total + uid) % pool], dst)
            total += messages
        reconstruct_mailboxes(store, Options(recursive=True, force=True, zero_index=True,
                                             jobs=jobs))
    return {"mailboxes": users * (folders + 1), "messages": total,
            "bytes": None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--folders", type=int, default=3, help="folders per user besides INBOX")
    ap.add_argument("--messages", type=int, default=20, help="messages per mailbox")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--source", help="directory of real messages to draw from")
    ap.add_argument("--link-pool", type=int, metavar="N",
                    help="hard-link every message from a pool of N synthetic ones and index "
                         "with reconstruct (fast; for memory and scale runs)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    if a.link_pool:
        r = build_linked(a.root, a.users, a.folders, a.messages, a.link_pool, a.seed)
    else:
        r = build(a.root, a.users, a.folders, a.messages, a.seed, a.source)
    size = "" if r["bytes"] is None else f", {r['bytes']} bytes"
    print(f"built {a.root}: {r['mailboxes']} mailboxes, {r['messages']} messages{size} "
          f"in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
