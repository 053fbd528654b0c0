"""Private files: written 0600 whatever was there, and what `up` keeps in its data folder tightened
without following links or touching anything else."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from core.private import tighten, tightened, write_private
from telework.data_folder import make_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@given(st.integers(min_value=0, max_value=0o7777))
def test_tightened_keeps_the_owner_bits_and_drops_the_others(bits: int) -> None:
    """Group and other bits go, the owner's and the special bits stay; private stays untouched."""
    result = tightened(stat.S_IFREG | bits)
    if bits & 0o077:
        assert result == bits & ~0o077
    else:
        assert result is None


def test_write_private_replaces_an_open_file_with_a_0600_one(tmp_path: Path) -> None:
    """An older 0644 file is replaced by a 0600 one with the new content, under any umask."""
    path = tmp_path / "redis.url"
    path.write_text("old\n")
    path.chmod(0o644)
    old = os.umask(0)
    try:
        write_private(path, "redis://:pw@127.0.0.1:1/0\n")
    finally:
        os.umask(old)
    assert (path.read_text(), mode(path)) == ("redis://:pw@127.0.0.1:1/0\n", 0o600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["redis.url"]


def test_tighten_goes_through_a_folder_but_never_through_a_link(tmp_path: Path) -> None:
    """Folders and files lose group and other bits (the owner's x stays); a link's target is untouched."""
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    outside.chmod(0o644)
    tree = tmp_path / "redis"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub").chmod(0o755)
    tree.chmod(0o755)
    (tree / "telework.aof").write_text("x")
    (tree / "telework.aof").chmod(0o664)
    (tree / "tool").write_text("#!/bin/sh\n")
    (tree / "tool").chmod(0o755)
    (tree / "private").write_text("x")
    (tree / "private").chmod(0o600)
    (tree / "link").symlink_to(outside)
    changed = tighten(tree)
    assert changed == sorted([tree, tree / "sub", tree / "telework.aof", tree / "tool"])
    assert [mode(tree), mode(tree / "sub"), mode(tree / "telework.aof"), mode(tree / "tool")] == [
        0o700,
        0o700,
        0o600,
        0o700,
    ]
    assert (mode(tree / "private"), mode(outside)) == (0o600, 0o644)
    assert tighten(tree) == []


def test_make_private_tightens_the_folder_and_the_named_entries_only(tmp_path: Path) -> None:
    """The data folder becomes 0700 and the named entries private; another file in it is left alone;
    a name that does not exist is skipped."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    for name in ("telework.db", "notes.txt"):
        (data / name).write_text("x")
        (data / name).chmod(0o644)
    assert make_private(data, ["telework.db", "missing"]) == [data, data / "telework.db"]
    assert (mode(data), mode(data / "telework.db"), mode(data / "notes.txt")) == (0o700, 0o600, 0o644)
