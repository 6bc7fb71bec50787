"""A delivering process stopped at each named step of an append (store/crash.py),
as a kill -9 there would leave it; an independent oracle (the messages' bytes)
shows no acknowledged message is lost, no index record exists without its file,
and the next delivery heals a cut-off append. The timed kills at random moments
are tools/torture.py's (a benchmark, not a test)."""

import hashlib
import sys

import pytest
from conftest import crash_at

from store import index
from store.mailbox import Store, message_path

DRIVER = """
import sys
from store.mailbox import Store
root, start, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
s = Store.open(root)
for i in range(start, start + 12, 3 if batch else 1):
    datas = [f"Subject: m{i + k}\\n\\nbody {i + k}\\n".encode() for k in range(3 if batch else 1)]
    uids = s.append_many("user/joe", datas, batch=batch) if batch else [s.append("user/joe", datas[0])]
    for u, d in zip(uids, datas):
        sys.stdout.write(f"{u} {d.decode().split()[1]}\\n")
    sys.stdout.flush()
"""


def oracle(i):
    return f"Subject: m{i}\n\nbody {i}\n".encode()


@pytest.mark.parametrize("point", ["append:after-file-sync", "append:after-records",
                                   "append:after-header"])
@pytest.mark.parametrize("batch", [False, True])
def test_a_delivery_stopped_at_each_step_loses_nothing(store, batch, point):
    store.create("user/joe")
    root = store.layout.root
    store.close()
    acked: dict[int, str] = {}
    for rnd, nth in enumerate((1, 3, 2)):  # the first append, a later one, again after a heal
        r = crash_at(f"{point}@{nth}", [sys.executable, "-c", DRIVER, root, str(rnd * 1000),
                                        "1" if batch else "0"], text=True)
        for line in r.stdout.splitlines():
            uid, tag = line.split()
            acked[int(uid)] = tag
        assert len(r.stdout.splitlines()) == (nth - 1) * (3 if batch else 1)
        with Store.open(root) as s:
            mdir = s.mailbox_dir("user/joe")
            idx = index.read_index(mdir, "user/joe/INBOX")
            # no index record without its file, and every file matches its GUID
            for rec in idx.records:
                data = open(message_path(mdir, rec.uid), "rb").read()
                assert hashlib.sha256(data).digest() == rec.guid
            s.append("user/joe", b"Subject: heal\n\nheal\n")  # heals a cut-off append
            after = s.read("user/joe")
            assert after.problems == []
            indexed = {rec.uid for rec in after.records}
            assert set(acked) <= indexed, sorted(set(acked) - indexed)[:5]
            for uid, tag in acked.items():
                assert s.message("user/joe", uid) == oracle(int(tag[1:]))
            uids = [rec.uid for rec in after.records]
            assert uids == sorted(set(uids))  # no UID given twice
    assert len(acked) == 3 * (3 if batch else 1)
