"""hbfork's heartbeats and heartbeat file -> a real Apache front (lbmethod_heartbeat).

- `hbfork beat` beside non-Apache backends (`hbfork backend`, which sends nothing itself)
  -> Apache's mod_heartmonitor writes them to hb.dat and mod_proxy_balancer routes by them.
- hbfork's `[heartbeat] storage` file -> read by a real Apache front's lbmethod_heartbeat in
  place of mod_heartmonitor's (real Apache backends beat to hbfork).

Apache cannot listen for heartbeats on a unicast address, so everything goes through the
lab's multicast group.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from pathlib import Path

import pytest
from labkit import (
    BACKEND_CONF,
    FRONT_HEARTMONITOR_CONF,
    FRONT_LBMETHOD_CONF,
    GROUP,
    Launcher,
    hbfork_config,
    unprivileged_user,
    wait_for,
)

pytestmark = [pytest.mark.netns, pytest.mark.apache]

# mod_heartmonitor's file format, exactly: "IP &ready=N&busy=M&lastseen=S&port=P".
HB_LINE = re.compile(r"^(\S+) &ready=(\d+)&busy=(\d+)&lastseen=(\d+)&port=(\d+)$")
BEAT_PORT = 8080
BEAT_READY, BEAT_BUSY = 8, 1   # busy > 0: Apache weighs busy == 0 members at ready/4


def read_hb_dat(path: Path) -> dict[str, dict[str, int]]:
    """{ip: {ready, busy, lastseen, port}}; every line must match the format exactly."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    entries = {}
    for line in text.splitlines():
        match = HB_LINE.match(line)
        assert match, f"{path}: line not in mod_heartmonitor's format: {line!r}"
        ip, *numbers = match.groups()
        entries[ip] = dict(zip(("ready", "busy", "lastseen", "port"), map(int, numbers),
                               strict=True))
    return entries


def writable_by_apache_children(path: Path) -> Path:
    """mod_heartmonitor writes hb.dat from a child process, which runs unprivileged."""
    user, group = unprivileged_user() or ("nobody", "nogroup")
    path.mkdir(mode=0o755, exist_ok=True)
    shutil.chown(path, user, group)
    return path


def test_hbfork_beat_to_apache_heartmonitor(apache: None, launcher: Launcher) -> None:
    lab = launcher.lab
    beaters = {host: lab.host(host).address for host in ("b1", "b2")}
    for host, address in beaters.items():
        launcher.process(host, f"backend-{host}", [
            sys.executable, "-m", "hbfork", "backend", "--listen", f"{address}:{BEAT_PORT}",
            "--name", f"beat-{host}"])
        launcher.process(host, f"beat-{host}", [
            sys.executable, "-m", "hbfork", "beat", "--to", GROUP, "--from", address,
            "--port", str(BEAT_PORT), "--ready", str(BEAT_READY), "--busy", str(BEAT_BUSY)])
    storage = writable_by_apache_children(launcher.workdir / "heartmonitor") / "hb.dat"
    front = lab.host("front").address
    apache = launcher.apache(
        "front", "apache-front", FRONT_HEARTMONITOR_CONF, HB_ADDR=front, HB_GROUP=GROUP,
        HB_STORAGE=str(storage), **{f"HB_MEMBER{n}": f"{address}:{BEAT_PORT}"
                                    for n, address in enumerate(beaters.values(), 1)})
    # mod_heartmonitor writes every ~5 s, and its first file is empty.
    expected = {"ready": BEAT_READY, "busy": BEAT_BUSY, "port": BEAT_PORT}
    entries = wait_for(
        lambda: all(_matches(read_hb_dat(storage).get(a), expected) for a in beaters.values())
        and read_hb_dat(storage),
        20, lambda: f"hb.dat: {read_hb_dat(storage)}\n{launcher.output()}")
    assert all(entry["lastseen"] < 10 for entry in entries.values()), entries
    result = launcher.client("b3", "fetch", f"http://{front}/who", "60")
    assert result["errors"] == {} and result["statuses"] == {"200": 60}, \
        f"{result}\n{apache.output()}"
    assert set(result["backends"]) == {f"beat-{host}" for host in beaters}, result


def _matches(entry: dict[str, int] | None, expected: dict[str, int]) -> bool:
    return entry is not None and all(entry[k] == v for k, v in expected.items())


def test_apache_lbmethod_reads_hbfork_storage(apache: None, launcher: Launcher) -> None:
    lab = launcher.lab
    # >= 4 each: Apache weighs an idle member (busy 0) at ready/4, so 3 would never be picked.
    threads = {"b1": 4, "b2": 5, "b3": 6}
    addresses = {host: lab.host(host).address for host in threads}
    for host, count in threads.items():
        launcher.apache(host, f"apache-{host}", BACKEND_CONF, HB_ADDR=addresses[host],
                        HB_GROUP=GROUP, HB_THREADS=str(count))
    front = lab.host("front").address
    storage_dir = launcher.workdir / "hbfork-storage"
    storage_dir.mkdir(mode=0o755, exist_ok=True)
    storage = storage_dir / "hb.dat"
    hbfork = launcher.hbfork("front", "hbfork-monitor", lambda directory: hbfork_config(
        directory, f"{front}:8080", [f"{a}:80" for a in addresses.values()],
        extra_heartbeat=f'storage = "{storage}"\nstorage_interval = 1'))
    expected = {address: {"ready": threads[host], "busy": 0, "port": 80}
                for host, address in addresses.items()}
    wait_for(lambda: all(_matches(read_hb_dat(storage).get(a), e) for a, e in expected.items()),
             6, lambda: f"hbfork's storage: {read_hb_dat(storage)}\n{hbfork.output()}")
    # Written as mod_heartmonitor does: mode 0444, a new file renamed over the old one.
    first = os.stat(storage)
    assert stat.S_IMODE(first.st_mode) == 0o444
    wait_for(lambda: os.stat(storage).st_ino != first.st_ino, 4,
             "the storage file was not replaced (atomic rename) within 4 storage intervals")
    apache = launcher.apache(
        "front", "apache-front", FRONT_LBMETHOD_CONF, HB_ADDR=front, HB_STORAGE=str(storage),
        **{f"HB_MEMBER{n}": f"{address}:80" for n, address in enumerate(addresses.values(), 1)})
    result = launcher.client("front", "fetch", f"http://{front}/who.txt", "90")
    assert result["errors"] == {} and result["statuses"] == {"200": 90}, \
        f"{result}\n{apache.output()}"
    assert set(result["backends"]) == {f"apache-{host}" for host in threads}, result
