"""fsutil.Reader: the same bytes as a plain read whatever the order, and
no descriptor left open, whether it fetches ahead (cold) or not."""

import os

import pytest
from build_store import build

from store import fsutil
from store.mailbox import Store
from store.reconstruct.runner import Options, reconstruct_mailboxes


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def files(tmp_path):
    out = []
    for i in range(40):
        p = tmp_path / f"{i}.msg"
        p.write_bytes(os.urandom(100 + i * 37))
        out.append((str(p), p.stat().st_size))
    return out


@pytest.mark.parametrize("cold", [True, False])
def test_reads_in_order_out_of_order_skipping_and_missing(files, cold):
    before = _open_fds()
    os.unlink(files[35][0])  # gone before anyone opens it
    with fsutil.Reader(files, depth=8, cold=cold) as r:
        for p, size in files[:10]:
            assert r.read(p, size) == open(p, "rb").read()
        for p, size in files[25:30]:  # 10-24 are passed over and closed
            assert r.read(p, size) == open(p, "rb").read()
        p, size = files[12]  # behind the window: a plain read
        assert r.read(p, size) == open(p, "rb").read()
        with pytest.raises(FileNotFoundError):
            r.read(*files[35])
        assert _open_fds() - before <= 8
        p, size = files[39]
        with open(p, "ab") as f:
            f.write(b"grown")
        assert r.read(p, size) == open(p, "rb").read()  # longer than its stat said
    assert _open_fds() == before


def test_cold_rebuild_indexes_everything_and_leaks_nothing(tmp_path, monkeypatch):
    root = str(tmp_path / "store")
    build(root, users=2, folders=1, messages=30, seed=5)
    monkeypatch.setattr(fsutil, "_cached", lambda path: False)  # every mailbox looks cold
    before = _open_fds()
    with Store.open(root) as s:
        findings, summary = reconstruct_mailboxes(
            s, Options(recursive=True, force=True, zero_index=True, jobs=1))
        assert summary.messages_indexed == 2 * 2 * 30
        findings, summary = reconstruct_mailboxes(s, Options(recursive=True, check_only=True))
        assert [f for f in findings if f.problem] == []
    assert _open_fds() == before
