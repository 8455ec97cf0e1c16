"""Finding and removing tables that outlived their master.

A master unlinks its table when it exits, and so does the first worker that notices a dead
master. Nobody is left to do it when the whole process group dies at once (SIGKILL to the
group, the OOM killer taking a cgroup, a power cut of the container): the segment stays in
/dev/shm until reboot. The next master therefore looks for segments named like a table whose
master is gone, owned by a user it runs as, and removes them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from hbfork.table.layout import NAME_PREFIX
from hbfork.table.table import unlink_segment

SHM_DIR = "/dev/shm"
_NAME = re.compile(re.escape(NAME_PREFIX) + r"([1-9][0-9]{0,9})")


@dataclass(frozen=True, slots=True)
class Leftover:
    name: str
    pid: int
    size: int


def master_pid_of(name: str) -> int | None:
    """The master pid a segment name stands for, or None if it is not a table's name."""
    match = _NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def find_leftovers(owners: Collection[int], is_live_master: Callable[[int], bool],
                   directory: str = SHM_DIR) -> list[Leftover]:
    """Tables in `directory` owned by one of `owners` whose master is not running."""
    found = []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    for name in sorted(names):
        pid = master_pid_of(name)
        if pid is None:
            continue
        try:
            info = os.stat(os.path.join(directory, name), follow_symlinks=False)
        except OSError:
            continue  # removed meanwhile
        if info.st_uid in owners and not is_live_master(pid):
            found.append(Leftover(name, pid, info.st_size))
    return found


def reclaim(owners: Collection[int], is_live_master: Callable[[int], bool],
            directory: str = SHM_DIR) -> list[Leftover]:
    """Remove every leftover table (see find_leftovers); returns those removed."""
    removed = []
    for leftover in find_leftovers(owners, is_live_master, directory):
        if directory == SHM_DIR:
            gone = unlink_segment(leftover.name)
        else:  # tests point this at a scratch directory
            try:
                os.unlink(os.path.join(directory, leftover.name))
                gone = True
            except FileNotFoundError:
                gone = False
        if gone:
            removed.append(leftover)
    return removed
