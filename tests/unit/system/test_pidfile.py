"""The pid file and process liveness (hbfork.system.pidfile)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hbfork.core.errors import HbforkError
from hbfork.system.pidfile import alive, claim, read_pid


def test_a_running_process_is_alive_and_a_reaped_one_is_not() -> None:
    assert alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not alive(child.pid)
    assert not alive(0) and not alive(-1)


def test_a_zombie_is_not_alive() -> None:
    # An exited child nobody has reaped yet: kill(pid, 0) still succeeds on it.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_bytes().split(b") ")[1][:1] != b"Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        os.kill(child.pid, 0)  # the kernel still has it...
        assert not alive(child.pid)  # ...but it serves nothing
    finally:
        child.wait()


def test_read_pid_names_only_a_live_process(tmp_path: Path) -> None:
    path = tmp_path / "hb.pid"
    assert read_pid(str(path)) is None
    path.write_text("not a pid\n")
    assert read_pid(str(path)) is None
    path.write_text(f"{os.getpid()}\n")
    assert read_pid(str(path)) == os.getpid()


def test_claim_refuses_a_file_a_live_master_owns(tmp_path: Path) -> None:
    path = tmp_path / "hb.pid"
    path.write_text(f"{os.getppid()}\n")
    with pytest.raises(HbforkError, match="already running"):
        claim(str(path), os.getpid())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(f"{dead.pid}\n")
    claim(str(path), os.getpid())
    assert read_pid(str(path)) == os.getpid()



def test_is_hbfork_tells_a_reused_pid_from_a_master() -> None:
    from hbfork.system.pidfile import is_hbfork

    sleep = ["-c", "import time; time.sleep(30)"]
    # argv[0] as setproctitle leaves it ("hbfork: master"), and an unrelated process.
    master = subprocess.Popen(["hbfork: master", *sleep], executable=sys.executable)
    other = subprocess.Popen([sys.executable, *sleep])
    try:
        assert is_hbfork(master.pid)
        assert not is_hbfork(other.pid)
    finally:
        for child in (master, other):
            child.kill()
            child.wait()
    assert not is_hbfork(master.pid)
