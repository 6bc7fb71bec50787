"""reconstruct -m (and stored's resync, the same engine) and -q beside
mailboxes being created, deleted and renamed and mail delivered and
expunged: no entry of a live mailbox is removed, no entry of a deleted one
comes back, and usage adds up at the end (issue 10, item 6)."""

import multiprocessing as mp
import time

from build_store import build

from store.mailbox import Store
from store.reconstruct.runner import reconstruct_db

CTX = mp.get_context("fork")


def _churn(root, n, done):
    try:
        with Store.open(root) as s:
            for i in range(n):
                s.create(f"user/c{i:04d}")
                if i % 3 == 0:
                    s.delete(f"user/c{i:04d}")
                elif i % 3 == 1:
                    s.rename(f"user/c{i:04d}", f"user/r{i:04d}")
    finally:
        done.set()


def _mail(root, done):
    from store.index import FLAG_DELETED
    with Store.open(root) as s:
        while not done.is_set():
            for uid in s.append_many("user/user0000", [b"Subject: x\n\nbody\n"] * 3):
                if uid % 2:
                    s.set_flags("user/user0000", uid, FLAG_DELETED)
            s.expunge("user/user0000")
            time.sleep(0.005)  # flock is unfair: a tight loop would starve the lock takers


def _loop(root, done, m_runs, q_runs):
    """-m, and every third time -q (they exclude each other: reconstruct-db.lock)."""
    with Store.open(root) as s:
        while not done.is_set():
            reconstruct_db(s, partition=None, user=None, apply=True, mode="m")
            m_runs.value += 1
            if m_runs.value % 3 == 0:
                reconstruct_db(s, partition=None, user=None, apply=True, mode="q")
                q_runs.value += 1


def test_m_beside_create_delete_rename_loses_and_resurrects_nothing(tmp_path):
    root = str(tmp_path / "store")
    build(root, users=2, folders=0, messages=1, seed=1)
    done, m_runs, q_runs = CTX.Event(), CTX.Value("i", 0), CTX.Value("i", 0)
    churn = CTX.Process(target=_churn, args=(root, 300, done))
    others = [CTX.Process(target=_loop, args=(root, done, m_runs, q_runs)),
              CTX.Process(target=_mail, args=(root, done))]
    for p in others:
        p.start()
    churn.start()
    churn.join(300)
    for p in others:
        p.join(60)
    assert churn.exitcode == 0 and [p.exitcode for p in others] == [0, 0]
    assert m_runs.value >= 3 and q_runs.value >= 1  # beside the churn, not only after it
    want = {"user/user0000/INBOX", "user/user0001/INBOX"}
    want |= {f"user/c{i:04d}/INBOX" for i in range(300) if i % 3 == 2}
    want |= {f"user/r{i:04d}/INBOX" for i in range(300) if i % 3 == 1}
    with Store.open(root) as s:
        assert {i.name for i in s.list()} == want
        findings, _ = reconstruct_db(s, partition=None, user=None, apply=False, mode="m")
        assert [f.line() for f in findings] == []  # -n -m (and so -q's usage) clean at the end


def _create_and_fill(root, n, done):
    try:
        with Store.open(root) as s:
            for i in range(n):
                s.create(f"user/user0000/F{i:03d}")
                s.append_many(f"user/user0000/F{i:03d}", [b"Subject: q\n\nbody\n"] * 3)
                if i % 4 == 3:
                    s.delete(f"user/user0000/F{i - 1:03d}")
    finally:
        done.set()


def _q_loop(root, done, runs):
    with Store.open(root) as s:
        while not done.is_set():
            reconstruct_db(s, partition=None, user=None, apply=True, mode="q")
            runs.value += 1


def test_q_beside_folders_created_filled_and_deleted_keeps_usage_right(tmp_path):
    """-q counted a root's mailboxes as listed before it took their locks:
    mail delivered meanwhile into a folder created under the root was
    missing from the usage it wrote, and a folder deleted meanwhile was
    reported unreadable. It now writes only when the root's mailboxes are
    still the ones it counted (found by tools/torture.py --races)."""
    root = str(tmp_path / "store")
    build(root, users=1, folders=0, messages=1, seed=2)
    done, runs = CTX.Event(), CTX.Value("i", 0)
    work = CTX.Process(target=_create_and_fill, args=(root, 300, done))
    loop = CTX.Process(target=_q_loop, args=(root, done, runs))
    loop.start()
    work.start()
    work.join(300)
    loop.join(60)
    assert work.exitcode == 0 and loop.exitcode == 0
    assert runs.value >= 3
    with Store.open(root) as s:
        findings, _ = reconstruct_db(s, partition=None, user=None, apply=False, mode="q")
        assert [f.line() for f in findings] == []
