"""Process lifecycle with real processes: reload under load, respawn, orphans, signals."""

from __future__ import annotations

import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.integration.harness import (
    HBFORK,
    children_of,
    get,
    pid_alive,
    shm_exists,
    spread,
    wait_until,
)


class LoadClient(threading.Thread):
    """Sends requests until stopped; counts successes and every kind of failure."""

    def __init__(self, url: str, keep_alive: bool) -> None:
        super().__init__(daemon=True)
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.address = (host, int(port))
        self.keep_alive = keep_alive
        self.ok = 0
        self.failures: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        conn = None
        while not self.stop_event.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(*self.address, timeout=10)
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"HTTP {response.status}")
                if not self.keep_alive or response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as err:
                # A keep-alive connection the server closed between requests is not a lost
                # request only if the server told us (Connection: close) - it did not here.
                self.failures.append(repr(err))
                conn.close()
                conn = None
        if conn is not None:
            conn.close()


def _generation(proxy) -> int:
    return proxy.status()["master"]["config_generation"]


def _serving_workers(proxy) -> list[dict]:
    return [w for w in proxy.workers() if w["state"] == "ready"]


def test_ten_reloads_under_load_lose_nothing(cluster):
    proxy = cluster.proxy([], heartbeat={"discover": True})
    backends = [cluster.backend(n, 20, heartbeat=proxy.heartbeat_address) for n in "xyz"]
    proxy.wait_eligible(*(b.address for b in backends))
    clients = [LoadClient(proxy.url, keep_alive=k) for k in (True, True, False, False)]
    for client in clients:
        client.start()
    wait_until(lambda: all(c.ok > 5 for c in clients), 10, message="load to flow")
    for reload in range(2, 12):
        before = sum(c.ok for c in clients)
        proxy.send_signal(signal.SIGHUP)
        wait_until(lambda r=reload: _generation(proxy) == r, 15, message=f"reload {reload}")
        wait_until(lambda r=reload: all(w["generation"] == r for w in proxy.workers()), 20,
                   message=f"generation {reload} alone")
        wait_until(lambda b=before: sum(c.ok for c in clients) > b + 20, 10,
                   message="requests served after the reload")
    for client in clients:
        client.stop_event.set()
    for client in clients:
        client.join(15)
    failures = [f for c in clients for f in c.failures]
    assert failures == [], failures[:10]
    assert sum(c.ok for c in clients) > 500
    # members were never forgotten across the reloads
    assert all(proxy.member(b.address)["heartbeats"] > 0 for b in backends)


def test_invalid_config_on_reload_keeps_everything_running(cluster):
    proxy = cluster.proxy([], heartbeat={"discover": True})
    backend = cluster.backend("keep", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    pids = sorted(w["pid"] for w in proxy.workers())
    good = proxy.config_path.read_text()
    proxy.config_path.write_text(good + "\n[proxy]\nbogus = 1\n")  # duplicate table: invalid
    proxy.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in proxy.output(), 10, message="the reload error")
    assert str(proxy.config_path) in proxy.output()
    assert sorted(w["pid"] for w in proxy.workers()) == pids
    assert _generation(proxy) == 1
    assert spread(proxy.url, 20) == {"keep": 20}


def test_reload_applies_listener_changes(cluster):
    from tests.integration.harness import free_port

    proxy = cluster.proxy([], heartbeat={"discover": True})
    backend = cluster.backend("l", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    old_port, new_port = proxy.port, free_port()
    proxy.config["proxy"]["listen"] = [f"127.0.0.1:{new_port}"]
    proxy.write_config()
    proxy.send_signal(signal.SIGHUP)
    wait_until(lambda: _generation(proxy) == 2, 10, message="the reload")
    _, body, conn = wait_until(
        lambda: get(f"http://127.0.0.1:{new_port}"), 10, message="the new listener")
    conn.close()
    assert body == b"l\n"

    def old_closed() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", old_port), timeout=1):
                return False
        except ConnectionRefusedError:
            return True
    wait_until(old_closed, 20, message="the removed listener to close")


def test_killed_worker_is_replaced(cluster):
    proxy = cluster.proxy([], heartbeat={"discover": True})
    backend = cluster.backend("w", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    victim = proxy.workers()[0]
    os.kill(victim["pid"], signal.SIGKILL)
    killed_at = time.monotonic()

    def replaced() -> bool:
        workers = _serving_workers(proxy)
        return len(workers) == 2 and victim["pid"] not in {w["pid"] for w in workers}
    wait_until(replaced, 5, interval=0.01, message="a replacement worker")
    assert time.monotonic() - killed_at < 2.0  # "within a second", with room for a busy box
    assert spread(proxy.url, 30, keep_alive=False) == {"w": 30}
    assert "killed by SIGKILL" in proxy.output()


def test_killed_master_leaves_no_worker_and_no_segment(cluster):
    proxy = cluster.proxy([{"address": "127.0.0.9:9"}])
    workers = children_of(proxy.pid)
    assert len(workers) == 2
    segment = proxy.segment()
    assert shm_exists(segment)
    os.kill(proxy.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: not any(pid_alive(p) for p in workers), 3, interval=0.01,
               message="orphaned workers to exit")
    gone_after = time.monotonic() - killed_at
    wait_until(lambda: not shm_exists(segment), 2, interval=0.01,
               message="the segment to be unlinked")
    assert gone_after < 1.0


def test_a_master_killed_with_its_workers_leaves_no_table_after_the_next_start(cluster):
    # SIGKILL to the whole process group: no worker lives to unlink the table.
    first = cluster.proxy([{"address": "127.0.0.9:9"}])
    workers = children_of(first.pid)
    segment = first.segment()
    os.killpg(first.pid, signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(p) for p in [first.pid, *workers]), 5,
               message="the process group to die")
    # (Another master started on this machine meanwhile may have removed it already.)
    left_behind = shm_exists(segment)
    second = cluster.proxy([{"address": "127.0.0.9:9"}])
    assert not shm_exists(segment)
    if left_behind:
        assert f"removed table {segment} (" in second.output()
        assert f"left behind by master {first.pid}, which is no longer running" \
            in second.output()
    assert shm_exists(second.segment())  # its own table is, of course, kept


def test_ttin_and_ttou_change_the_worker_count(cluster):
    proxy = cluster.proxy([{"address": "127.0.0.9:9"}])
    proxy.send_signal(signal.SIGTTIN)
    wait_until(lambda: len(_serving_workers(proxy)) == 3, 10, message="a third worker")
    # One at a time: two identical signals sent back to back may merge into one (POSIX).
    proxy.send_signal(signal.SIGTTOU)
    wait_until(lambda: len(proxy.workers()) == 2, 15, message="two workers left")
    proxy.send_signal(signal.SIGTTOU)
    wait_until(lambda: len(proxy.workers()) == 1, 15, message="one worker left")
    assert proxy.workers()[0]["number"] == 1


def test_graceful_term_finishes_an_in_flight_slow_request(cluster):
    proxy = cluster.proxy([], heartbeat={"discover": True})
    backend = cluster.backend("slow", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    result: dict[str, object] = {}

    def slow() -> None:
        response, body, conn = get(proxy.url, "/?delay=1500")
        result.update(status=response.status, body=body, close=response.getheader("Connection"))
        conn.close()

    thread = threading.Thread(target=slow)
    thread.start()
    wait_until(lambda: proxy.member(backend.address)["in_flight"] == 1, 5,
               message="the slow request to be in flight")
    segment = proxy.segment()
    proxy.send_signal(signal.SIGTERM)
    thread.join(10)
    assert result == {"status": 200, "body": b"slow\n", "close": "close"}
    assert proxy.proc.wait(15) == 0
    assert not shm_exists(segment)
    assert not Path(proxy.config["proxy"]["pidfile"]).exists()


def test_int_is_a_fast_stop_and_second_term_hurries_a_graceful_one(cluster):
    proxy = cluster.proxy([], heartbeat={"discover": True}, proxy={"shutdown_timeout": 60})
    backend = cluster.backend("hold", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    conn.request("GET", "/?delay=20000")  # would hold a graceful stop for 20 s
    wait_until(lambda: proxy.member(backend.address)["in_flight"] == 1, 5,
               message="the request to be in flight")
    started = time.monotonic()
    proxy.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # behaviour under test: the graceful stop is still waiting
    assert proxy.alive()
    proxy.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(10) == 0
    assert time.monotonic() - started < 8
    conn.close()


def test_sigint_stops_fast(cluster):
    proxy = cluster.proxy([{"address": "127.0.0.9:9"}])
    workers = children_of(proxy.pid)
    segment = proxy.segment()
    proxy.send_signal(signal.SIGINT)
    assert proxy.proc.wait(5) == 0
    assert not any(pid_alive(p) for p in workers)
    assert not shm_exists(segment)


def test_second_master_with_the_same_pidfile_refuses(cluster):
    proxy = cluster.proxy([{"address": "127.0.0.9:9"}])
    result = subprocess.run([*HBFORK, "run", "-c", str(proxy.config_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"hbfork master pid {proxy.pid} is already running" in result.stderr
    assert proxy.alive()
    assert Path(proxy.config["proxy"]["pidfile"]).read_text().strip() == str(proxy.pid)


def test_workers_dying_at_boot_back_off(cluster, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    proxy = cluster.proxy([{"address": "127.0.0.9:9"}], log={"access": str(logs / "a.log")})
    shutil.rmtree(logs)  # from now on a new worker cannot open its access log
    healthy, doomed = proxy.workers()
    os.kill(doomed["pid"], signal.SIGKILL)  # the other worker stays up and healthy
    wait_until(lambda: "dying at boot" in proxy.output(), 10, message="the backoff message")
    time.sleep(3)  # behaviour under test: how many forks happen in 3 s
    forks = proxy.output().count(") started")
    assert forks < 12, f"{forks} forks: a fork loop"
    assert proxy.alive() and pid_alive(healthy["pid"])
    logs.mkdir()  # the cause goes away: the worker comes back
    wait_until(lambda: len(_serving_workers(proxy)) == 2, 40, message="workers to recover")


def test_failed_reload_keeps_every_socket_as_it_was(cluster):
    from tests.integration.harness import free_port

    # One worker: after it is replaced, only the new worker can answer on the status port.
    proxy = cluster.proxy([{"address": "127.0.0.9:9"}], proxy={"workers": 1})
    good = proxy.config_path.read_text()
    # 1: an error log that cannot be opened (valid to `hbfork check`)
    proxy.config["log"]["error"] = str(proxy.tmp / "missing-dir" / "error.log")
    proxy.write_config()
    proxy.send_signal(signal.SIGHUP)
    wait_until(lambda: proxy.output().count("reload failed") == 1, 10, message="reload error 1")
    # 2: a new status address (bindable) with a heartbeat address that is taken
    proxy.config_path.write_text(good)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 0))
    try:
        proxy.config["log"].pop("error")
        proxy.config["status"]["listen"] = f"127.0.0.1:{free_port()}"
        proxy.config["heartbeat"]["listen"] = f"127.0.0.1:{blocker.getsockname()[1]}"
        proxy.write_config()
        proxy.send_signal(signal.SIGHUP)
        wait_until(lambda: proxy.output().count("reload failed") == 2, 10,
                   message="reload error 2")
    finally:
        blocker.close()
    assert proxy.alive() and _generation(proxy) == 1
    victim = proxy.workers()[0]["pid"]
    os.kill(victim, signal.SIGKILL)  # its replacement must serve the same status address
    wait_until(lambda: victim not in {w["pid"] for w in _serving_workers(proxy)}
               and len(_serving_workers(proxy)) == 1, 10,
               message="the replacement to serve the original status address")
    assert proxy.status()["master"]["pid"] == proxy.pid


def test_stuck_worker_is_killed_and_replaced(cluster):
    proxy = cluster.proxy([{"address": "127.0.0.9:9"}], proxy={"worker_timeout": 1.5})
    victim = proxy.workers()[0]["pid"]
    os.kill(victim, signal.SIGSTOP)  # alive but never ticks again
    wait_until(lambda: victim not in {w["pid"] for w in _serving_workers(proxy)}
               and len(_serving_workers(proxy)) == 2, 30, message="the stuck worker replaced")
    assert "has not ticked" in proxy.output()
    wait_until(lambda: not pid_alive(victim), 5, message="the stuck worker to be gone")


def test_process_titles_show_role_generation_and_state(cluster):
    proxy = cluster.proxy([{"address": "127.0.0.9:9"}])
    master_title = Path(f"/proc/{proxy.pid}/cmdline").read_bytes().split(b"\0")[0]
    assert master_title == b"hbfork: master"
    for worker in proxy.workers():
        title = wait_until(
            lambda w=worker: Path(f"/proc/{w['pid']}/cmdline").read_bytes().split(b"\0")[0],
            5, message="the worker title")
        assert title.startswith(f"hbfork: worker {worker['number']} gen 1 ready conns=".encode())


def test_refuses_to_serve_as_root_without_user(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only meaningful as root")
    from tests.integration.harness import free_port

    config = tmp_path / "root.toml"
    config.write_text(f'[proxy]\nlisten = ["127.0.0.1:{free_port()}"]\n[heartbeat]\n'
                      f'listen = "127.0.0.1:{free_port(kind=socket.SOCK_DGRAM)}"\n'
                      'discover = true\n[status]\nlisten = ""\n')
    result = subprocess.run([*HBFORK, "run", "-c", str(config)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1
    assert "refusing to serve as root" in result.stderr


def test_privileges_are_dropped_after_binding(cluster):
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    home = cluster.tmp
    os.chmod(home, 0o755)  # the unprivileged master must be able to reach its files
    proxy = cluster.proxy([], heartbeat={"discover": True},
                          proxy={"user": "nobody", "allow_root": False})
    backend = cluster.backend("priv", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    for pid in [proxy.pid, *children_of(proxy.pid)]:
        status = Path(f"/proc/{pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4, (pid, uid_line)
    assert os.stat(f"/dev/shm/{proxy.segment()}").st_uid == nobody.pw_uid
    assert spread(proxy.url, 10) == {"priv": 10}
