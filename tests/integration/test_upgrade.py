"""Binary upgrade with real processes (issue 27): SIGUSR2 / `hbfork ctl upgrade` under load,
and upgrades that must fail while the old master goes on serving.

The code upgraded to is a copy of the package in the test's directory, started with that
directory as the working directory (so `python -m hbfork` finds the copy first, in the old
master and in the new one it execs): the test edits the copy to make a new version, or a
broken one.

`HBFORK_UPGRADE_SOAK=SECONDS` stretches the load test to that long (scripts/upgrade-soak)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import hbfork
from hbfork.cli import health
from tests.integration.conftest import Cluster
from tests.integration.harness import (
    HBFORK,
    Proxy,
    free_port,
    get,
    pid_alive,
    shm_exists,
    wait_until,
)
from tests.integration.test_lifecycle import LoadClient

UPGRADES = 4  # two of each way in (ctl upgrade, SIGUSR2)
SOAK_SECONDS = float(os.environ.get("HBFORK_UPGRADE_SOAK", "0"))


@pytest.fixture
def code(tmp_path: Path) -> Path:
    """A copy of the hbfork package to run, and to upgrade to after editing it."""
    root = tmp_path / "code"
    shutil.copytree(Path(hbfork.__file__).parent, root / "hbfork",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture
def masters(code: Path) -> Iterator[list[int]]:
    """Pids of masters started by upgrades (not our children): stopped at the end, with any
    other master running in `code` (one a failed test did not get to record)."""
    pids: list[int] = []
    yield pids
    pids += [pid for pid in masters_running_in(code) if pid not in pids]
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
    for pid in pids:
        wait_until(lambda p=pid: not pid_alive(p), 20, message=f"master {pid} to stop")
        assert not shm_exists(f"hbfork-{pid}"), f"master {pid} left its table behind"


def masters_running_in(directory: Path) -> list[int]:
    """hbfork masters whose working directory is `directory`: started by this test."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and Path(entry, "cwd").resolve() == directory.resolve() \
                    and Path(entry, "cmdline").read_bytes().startswith(b"hbfork: master"):
                found.append(int(entry.name))
        except OSError:
            continue  # gone, or not ours to look at
    return found


def ctl(proxy: Proxy, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HBFORK, "ctl", "-c", str(proxy.config_path), *words],
                          capture_output=True, text=True, timeout=180)


def master_pid(proxy: Proxy) -> int:
    return int(Path(proxy.config["proxy"]["pidfile"]).read_text())


def serving(proxy: Proxy, pid: int) -> dict:
    """The status of master `pid` once it alone answers (the old one's workers are gone)."""
    def check() -> dict | None:
        status = proxy.status()
        return status if status["master"]["pid"] == pid else None
    return wait_until(check, 15, message=f"master {pid} to serve the status page")


class HealthChecker(threading.Thread):
    """`hbfork health --socket` (its function, in-process) every 0.1 s until stopped."""

    def __init__(self, control: str) -> None:
        super().__init__(daemon=True)
        self.control = control
        self.healthy = 0
        self.unhealthy: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(0.1):
            code, line = health.ask(self.control, timeout=2.0)
            if code == health.EXIT_HEALTHY:
                self.healthy += 1
            else:
                self.unhealthy.append(line)


def beating(cluster: Cluster, code: Path) -> tuple[Proxy, str]:
    """A proxy running `code`, and the address of its one member, which beats every 0.5 s:
    it must stay eligible through every upgrade."""
    ip = "127.0.0.2"
    port = free_port(ip)
    proxy = cluster.proxy([{"address": f"{ip}:{port}"}], cwd=code,
                          proxy={"shutdown_timeout": 5})
    backend = cluster.backend("w", capacity=50, heartbeat=proxy.heartbeat_address, ip=ip,
                              port=port, interval=0.5)
    proxy.wait_eligible(backend.address)
    return proxy, backend.address


@pytest.mark.slow
def test_upgrades_under_load_lose_nothing(cluster: Cluster, code: Path,
                                          masters: list[int]) -> None:
    proxy, _ = beating(cluster, code)
    clients = [LoadClient(proxy.url, keep_alive=k) for k in (True, False, True, False)]
    checker = HealthChecker(f"{proxy.config['proxy']['pidfile']}.ctl")
    began = time.monotonic()
    for thread in [*clients, checker]:
        thread.start()
    upgrades = UPGRADES
    pause = SOAK_SECONDS / upgrades if SOAK_SECONDS else 0.5
    status = proxy.status()
    took: list[float] = []  # from the request to the old master and its workers gone
    try:
        for n in range(upgrades):
            time.sleep(pause)  # load between upgrades, not synchronisation
            before = status
            old_workers = {w["pid"] for w in before["workers"]}
            old_pid = before["master"]["pid"]
            asked = time.monotonic()
            if n % 2:
                os.kill(old_pid, signal.SIGUSR2)
                wait_until(lambda o=old_pid: master_pid(proxy) != o, 30,
                           message="SIGUSR2 to start a new master")
            else:
                done = ctl(proxy, "upgrade")
                assert done.returncode == 0 and done.stdout.startswith("ok upgraded"), \
                    done.stdout + done.stderr
            new_pid = master_pid(proxy)
            masters.append(new_pid)
            wait_until(lambda o=old_pid: not pid_alive(o), 20, message="the old master to exit")
            status = serving(proxy, new_pid)
            took.append(time.monotonic() - asked)
            assert status["master"]["code_loaded"] > before["master"]["code_loaded"]
            assert not old_workers & {w["pid"] for w in status["workers"]}
            assert not any(pid_alive(p) for p in old_workers), "an old worker outlived its master"
            assert not shm_exists(f"hbfork-{old_pid}")
            assert status["members"][0]["eligible"]
    finally:
        for thread in [*clients, checker]:
            thread.stop_event.set()
        for thread in [*clients, checker]:
            thread.join(15)
    ok = sum(c.ok for c in clients)
    failures = [f for c in clients for f in c.failures]
    print(f"\n{upgrades} upgrades under load in {time.monotonic() - began:.1f}s: {ok} "
          f"requests ok, {len(failures)} failed; each upgrade until the old master and workers "
          f"were gone: {', '.join(f'{t:.2f}s' for t in took)}; health checks "
          f"{checker.healthy} healthy, {len(checker.unhealthy)} not")
    assert not failures, failures[:10]
    assert ok > 100
    # keepalived's check would have kept the VIP here all along.
    assert not checker.unhealthy and checker.healthy > 10, checker.unhealthy[:5]


@pytest.mark.slow
def test_an_upgrade_that_cannot_start_leaves_the_old_master_serving(
        cluster: Cluster, code: Path, masters: list[int]) -> None:
    proxy, _ = beating(cluster, code)
    client = LoadClient(proxy.url, keep_alive=False)
    client.start()
    good = proxy.config_path.read_text()
    try:
        # 1. The config names a key file that is not there: the new master cannot start.
        proxy.config_path.write_text(good.replace(
            "[heartbeat]", f"[heartbeat]\nkey_file = \"{proxy.tmp / 'missing.key'}\"", 1))
        done = ctl(proxy, "upgrade")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "upgrade failed: cannot start:" in done.stdout and "missing.key" in done.stdout
        assert f"master {proxy.pid} goes on serving" in done.stdout
        proxy.config_path.write_text(good)
        # 2. A version whose config check rejects this config.
        loader = code / "hbfork" / "system" / "configfile.py"
        marker = "    config = from_document("
        assert marker in loader.read_text()  # the line this step patches is still there
        loader.write_text(loader.read_text().replace(
            marker, "    raise ConfigError(name, '[proxy] workers', "
            "'stricter in this version')\n" + marker))
        done = ctl(proxy, "upgrade")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "upgrade failed: configuration error:" in done.stdout
        assert "[proxy] workers: stricter in this version" in done.stdout
        loader.write_text(loader.read_text().replace(
            "    raise ConfigError(name, '[proxy] workers', 'stricter in this version')\n", ""))
        # 3. The new code is broken: its master dies at start.
        broken = code / "hbfork" / "master" / "master.py"
        original = broken.read_text()
        broken.write_text(original + "\ndef (:\n")
        done = ctl(proxy, "upgrade")
        assert done.returncode == 1
        assert "the new master exited (exit code 1) before its workers were ready" \
            in done.stdout, done.stdout
        # 4. SIGUSR2 with the same broken code: said in the log.
        os.kill(proxy.pid, signal.SIGUSR2)
        wait_until(lambda: proxy.output().count("upgrade failed; master") >= 4, 30,
                   message="the failed SIGUSR2 upgrade to be logged")
        assert master_pid(proxy) == proxy.pid and proxy.alive()
        # 5. Fixed, and a new version: that one is taken.
        broken.write_text(original)
        init = code / "hbfork" / "__init__.py"
        init.write_text(init.read_text().replace(hbfork.__version__, "9.9.9"))
        done = ctl(proxy, "upgrade")
        assert done.returncode == 0, done.stdout
        masters.append(master_pid(proxy))
        assert "(hbfork 9.9.9) serves" in done.stdout
        assert serving(proxy, masters[-1])["master"]["version"] == "9.9.9"
    finally:
        client.stop_event.set()
        client.join(15)
    assert not client.failures, client.failures[:10]
    assert client.ok > 0
    assert "SyntaxError" in proxy.output()  # the broken master's own log line says why


def test_control_and_health_follow_the_new_master(cluster: Cluster, code: Path,
                                                  masters: list[int]) -> None:
    proxy, member = beating(cluster, code)
    assert ctl(proxy, "drain", member).returncode == 0
    assert ctl(proxy, "upgrade").returncode == 0
    masters.append(master_pid(proxy))
    status = serving(proxy, masters[-1])
    assert status["members"][0]["drained"]  # operator state carried over
    assert ctl(proxy, "enable", member).returncode == 0  # the adopted socket answers
    assert proxy.member(member)["eligible"]
    health = subprocess.run([*HBFORK, "health", "-c", str(proxy.config_path)],
                            capture_output=True, text=True, timeout=30)
    assert health.returncode == 0, health.stdout
    shown = subprocess.run([*HBFORK, "status", "-c", str(proxy.config_path), "--json"],
                           capture_output=True, text=True, timeout=30)
    assert json.loads(shown.stdout)["master"]["pid"] == masters[-1]  # the pid file moved


def test_an_upgrade_applies_listener_changes(cluster: Cluster, code: Path,
                                             masters: list[int]) -> None:
    proxy, _ = beating(cluster, code)
    new_port = free_port()
    proxy.config["proxy"]["listen"] = [f"127.0.0.1:{new_port}"]
    proxy.write_config()
    done = ctl(proxy, "upgrade")
    assert done.returncode == 0, done.stdout
    masters.append(master_pid(proxy))
    serving(proxy, masters[-1])
    response, _, conn = get(f"http://127.0.0.1:{new_port}")  # bound by the new master
    conn.close()
    assert response.status == 200

    def old_port_closed() -> bool:
        try:
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()
        except ConnectionRefusedError:
            return True
        return False
    # Nobody serves the old port any more once the old workers have drained.
    wait_until(old_port_closed, 15, message="the listener the config dropped to close")
