"""SIGKILL a delivering process at random points; an independent oracle (the
messages' bytes and hashes) shows no acknowledged message is lost, no index
record exists without its file, and the next delivery heals a cut-off append."""

import hashlib
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from store import index
from store.mailbox import Store, message_path

DRIVER = """
import sys
from store.mailbox import Store
root, start, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
s = Store.open(root)
i = start
while True:
    datas = [f"Subject: m{i + k}\\n\\nbody {i + k}\\n".encode() for k in range(3 if batch else 1)]
    uids = s.append_many("user/joe", datas, batch=batch) if batch else [s.append("user/joe", datas[0])]
    for u, d in zip(uids, datas):
        sys.stdout.write(f"{u} {d.decode().split()[1]}\\n")
    sys.stdout.flush()
    i += len(datas)
"""


def oracle(i):
    return f"Subject: m{i}\n\nbody {i}\n".encode()


@pytest.mark.parametrize("batch", [False, True])
def test_kill9_during_delivery_loses_nothing(store, batch):
    store.create("user/joe")
    root = store.layout.root
    store.close()
    rng = random.Random(1234 + batch)
    acked: dict[int, str] = {}
    start = 0
    for _round in range(6):
        p = subprocess.Popen([sys.executable, "-c", DRIVER, root, str(start), "1" if batch else "0"],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
        time.sleep(0.25 + rng.random() * 0.4)
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate()
        for line in out.splitlines():
            if line.count(" ") == 1:
                uid, tag = line.split()
                acked[int(uid)] = tag
        start += 100000
        with Store.open(root) as s:
            mdir = s.mailbox_dir("user/joe")
            idx = index.read_index(mdir, "user/joe/INBOX")
            # no index record without its file, and every file matches its GUID
            for r in idx.records:
                data = open(message_path(mdir, r.uid), "rb").read()
                assert hashlib.sha256(data).digest() == r.guid
            s.append("user/joe", b"Subject: heal\n\nheal\n")  # heals a cut-off append
            start_uid = s.read("user/joe")
            assert start_uid.problems == []
            indexed = {r.uid for r in start_uid.records}
            assert set(acked) <= indexed, sorted(set(acked) - indexed)[:5]
            for uid, tag in acked.items():
                assert s.message("user/joe", uid) == oracle(int(tag[1:]))
    assert len(acked) > 20
