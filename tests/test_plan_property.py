"""One path for check and repair, under random damage (hypothesis): what a
check announces is exactly what the repair then does, the repair leaves a
mailbox a second check finds clean, and message files are never lost."""

import os
import shutil

import pytest
from build_store import build
from conftest import msg_hashes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import index
from store.mailbox import Store, message_path
from store.reconstruct.runner import Options, reconstruct_mailboxes

NAME = "user/user0000"
damage_steps = st.lists(st.one_of(
    st.tuples(st.just("flip"), st.sampled_from(index.INDEX_FILES), st.integers(0, 4000),
              st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.sampled_from(index.INDEX_FILES), st.integers(0, 1200)),
    st.tuples(st.just("unlink-msg"), st.integers(1, 6)),
    st.tuples(st.just("copy-msg"), st.integers(1, 6), st.integers(1, 12)),
), min_size=1, max_size=4)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("pristine") / "store")
    build(root, users=1, folders=0, messages=6, seed=4)
    return root


def _damage(mdir: str, steps) -> None:
    for step in steps:
        if step[0] == "flip":
            path = os.path.join(mdir, step[1])
            size = os.path.getsize(path)
            if size:
                with open(path, "r+b") as f:
                    f.seek(step[2] % size)
                    b = f.read(1)[0]
                    f.seek(step[2] % size)
                    f.write(bytes([b ^ step[3]]))
        elif step[0] == "truncate":
            path = os.path.join(mdir, step[1])
            os.truncate(path, min(step[2], os.path.getsize(path)))
        elif step[0] == "unlink-msg":
            if os.path.exists(message_path(mdir, step[1])):
                os.unlink(message_path(mdir, step[1]))
        elif os.path.exists(message_path(mdir, step[1])):
            dst = message_path(mdir, step[2])
            if not os.path.exists(dst):
                shutil.copyfile(message_path(mdir, step[1]), dst)


def _ident(f):
    return (f.mailbox, f.kind, f.detail, f.act)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=damage_steps)
def test_check_announces_what_the_repair_does(pristine, tmp_path_factory, steps):
    root = str(tmp_path_factory.mktemp("case") / "store")
    shutil.copytree(pristine, root)
    with Store.open(root) as s:
        mdir = s.mailbox_dir(NAME)
    _damage(mdir, steps)
    files_before = msg_hashes(root)
    with Store.open(root, readonly=True) as s:
        said, _ = reconstruct_mailboxes(s, Options(names=[NAME], check_only=True))
    with Store.open(root) as s:
        done, _ = reconstruct_mailboxes(s, Options(names=[NAME]))
    done_here = done
    assert sorted(map(_ident, said), key=repr) == sorted(map(_ident, done_here), key=repr)
    assert all(f.applied == bool(f.act.plan) for f in done_here)
    assert not any(f.applied for f in said)
    with Store.open(root, readonly=True) as s:
        again, _ = reconstruct_mailboxes(s, Options(names=[NAME], check_only=True))
    assert [f for f in again if f.problem] == [], again
    after = msg_hashes(root)
    assert set(files_before) <= set(after)  # no message file lost (hard links may add names)
