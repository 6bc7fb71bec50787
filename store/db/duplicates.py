"""The duplicate-delivery database (Cyrus's deliver.db): which message
(by Message-ID) went to which mailbox, and when.

A separate LMDB environment, `<root>/dbdata/duplicates/`: losing it costs
at most a second copy of a message, so it is never checked, snapshotted
or rebuilt; a damaged one is set aside and started afresh.

Key: SHA-256 of `<message-id>\\0<mailbox>` (32 bytes); value: the time of
delivery, DUP_VALUE (8 bytes)."""

from __future__ import annotations

import hashlib
import os
import struct
import time

import lmdb

from ..errors import StoreError
from .database import open_env

# | offset | size | field |
# | 0      | 8    | seconds since the epoch of the delivery, little-endian unsigned |
DUP_VALUE = struct.Struct("<Q")
assert DUP_VALUE.size == 8

PRUNE_EVERY = 1000  # notes between two sweeps of entries older than the window


class Duplicates:
    def __init__(self, path: str):
        os.makedirs(path, exist_ok=True)
        try:
            self.env = open_env(path, readonly=False, create=True)
        except StoreError:  # damaged: losing it only costs a duplicate; start afresh
            os.replace(path, f"{path}.damaged.{int(time.time())}")
            os.makedirs(path)
            self.env = open_env(path, readonly=False, create=True)
        self._notes = 0

    def close(self) -> None:
        self.env.close()

    @staticmethod
    def key(msgid: bytes, mailbox: str) -> bytes:
        return hashlib.sha256(msgid.strip() + b"\0" + mailbox.encode("utf-8")).digest()

    def seen(self, msgid: bytes, mailbox: str, window: int, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self.env.begin() as txn:
            v = txn.get(self.key(msgid, mailbox))
        return v is not None and now - DUP_VALUE.unpack(v)[0] < window

    def note(self, msgid: bytes, mailbox: str, window: int, now: float | None = None) -> None:
        now = int(time.time() if now is None else now)
        try:
            with self.env.begin(write=True) as txn:
                txn.put(self.key(msgid, mailbox), DUP_VALUE.pack(now))
                self._notes += 1
                if self._notes % PRUNE_EVERY == 0:
                    self._prune(txn, now - window)
        except lmdb.MapFullError:  # full of recent entries: forget them all
            with self.env.begin(write=True) as txn:
                txn.drop(self.env.open_db(txn=txn), delete=False)

    @staticmethod
    def _prune(txn, before: int) -> None:
        cur = txn.cursor()
        more = cur.first()
        while more:
            if DUP_VALUE.unpack(cur.value())[0] < before:
                more = cur.delete()
            else:
                more = cur.next()
