"""Finding tables whose master is gone (hbfork.table.segments), in a scratch directory."""

from __future__ import annotations

import os
from pathlib import Path

from hbfork.table.segments import find_leftovers, master_pid_of, reclaim


def test_only_table_names_stand_for_a_master_pid() -> None:
    assert master_pid_of("hbfork-1234") == 1234
    for name in ("hbfork-", "hbfork-0", "hbfork-12x", "hbfork-01", "other-12", "hbfork-1.tmp",
                 "hbfork-12345678901"):
        assert master_pid_of(name) is None, name


def test_leftovers_are_tables_of_dead_masters_owned_by_us(tmp_path: Path) -> None:
    for name in ("hbfork-100", "hbfork-200", "hbfork-300", "sem.other", "hbfork-x"):
        (tmp_path / name).write_bytes(b"\0" * 64)
    uid = os.geteuid()
    live = {200}
    found = find_leftovers({uid}, live.__contains__, str(tmp_path))
    assert [(f.name, f.pid, f.size) for f in found] == [("hbfork-100", 100, 64),
                                                        ("hbfork-300", 300, 64)]
    assert find_leftovers({uid + 1}, live.__contains__, str(tmp_path)) == []  # not ours


def test_reclaim_removes_the_leftovers_and_nothing_else(tmp_path: Path) -> None:
    for name in ("hbfork-100", "hbfork-200", "unrelated"):
        (tmp_path / name).write_bytes(b"")
    removed = reclaim({os.geteuid()}, lambda pid: pid == 200, str(tmp_path))
    assert [r.name for r in removed] == ["hbfork-100"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hbfork-200", "unrelated"]


def test_a_missing_directory_has_no_leftovers(tmp_path: Path) -> None:
    assert reclaim({os.geteuid()}, lambda pid: False, str(tmp_path / "none")) == []
