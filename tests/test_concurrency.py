"""Several processes appending to one mailbox at once never lose, duplicate
or renumber a message."""

import multiprocessing as mp

from conftest import msg_hashes

from store.mailbox import Store


def _deliver(root, worker, n):
    with Store.open(root) as s:
        for i in range(n):
            s.append("user/joe", f"Subject: w{worker} m{i}\n\nbody {worker}/{i}\n".encode())


def test_four_processes_deliver_400_messages(store):
    store.create("user/joe")
    root = store.layout.root
    store.close()
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_deliver, args=(root, w, 100)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store.open(root) as s:
        idx = s.read("user/joe")
        assert idx.problems == []
        assert [r.uid for r in idx.records] == list(range(1, 401))
        assert idx.header.uidnext == 401
        bodies = {s.message("user/joe", u) for u in range(1, 401)}
        assert bodies == {f"Subject: w{w} m{i}\n\nbody {w}/{i}\n".encode()
                          for w in range(4) for i in range(100)}
        assert s.quotas("user/joe")[0]["used_messages"] == 400
    assert len(msg_hashes(root)) == 400
