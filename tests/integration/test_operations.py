"""Operations: status page, JSON, metrics, `hbfork status`, `hbfork ctl`, access log, hb.dat."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hbfork.ops.hbdat import parse_storage
from tests.integration.harness import HBFORK, get, spread, wait_until

COMBINED_PLUS = re.compile(
    r'^(\S+) - - \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "([^"]*)" (\d{3}|-) (\d+|-) '
    r'"([^"]*)" "([^"]*)" member=(\S+) upstream=(\S+) total=(\S+)$')
STORAGE_LINE = re.compile(r"^\d+\.\d+\.\d+\.\d+ &ready=\d+&busy=\d+&lastseen=\d+&port=\d+$")


def _hbfork(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HBFORK, *args], capture_output=True, text=True, timeout=30)


def _status_page(proxy, path: str) -> tuple[int, str, bytes]:
    response, body, conn = get(f"http://127.0.0.1:{proxy.status_port}", path)
    conn.close()
    return response.status, response.getheader("Content-Type"), body


def test_status_json_matches_the_table_during_live_heartbeats(cluster):
    proxy = cluster.proxy([], heartbeat={"discover": True})
    backends = [cluster.backend(n, c, heartbeat=proxy.heartbeat_address)
                for n, c in (("a", 7), ("b", 21))]
    proxy.wait_eligible(*(b.address for b in backends))
    table = proxy.table()
    try:
        for _ in range(5):  # heartbeats keep arriving while we compare
            status = {m["address"]: m for m in proxy.status()["members"]}
            records = {r.address: r for r in table.members()}
            assert set(status) == set(records)
            for address, record in records.items():
                assert status[address]["ready"] == record.ready
                assert status[address]["lbset"] == record.lbset
                assert status[address]["state"] == record.reason
                # heartbeats only grow: the JSON was read first
                assert status[address]["heartbeats"] <= record.heartbeats
    finally:
        table.close()
    shares = {m["address"]: m["share"] for m in proxy.status()["members"]}
    assert shares[backends[0].address] == pytest.approx(0.25)
    assert shares[backends[1].address] == pytest.approx(0.75)


def test_metrics_parse_with_prometheus_client(cluster):
    proxy = cluster.proxy([{"address": "127.0.0.9:9", "name": "never"}],
                          heartbeat={"discover": True})
    backend = cluster.backend("m", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    spread(proxy.url, 20)

    def answered() -> float:  # a worker counts a request just after it has answered it
        _, _, page = _status_page(proxy, "/metrics")
        return sum(s.value for f in text_string_to_metric_families(page.decode())
                   if f.name == "hbfork_requests" for s in f.samples
                   if s.labels.get("member") == backend.address)

    wait_until(lambda: answered() >= 20, 5, message="the 20 requests counted")
    code, content_type, body = _status_page(proxy, "/metrics")
    assert code == 200 and content_type.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in ("hbfork_member_ready", "hbfork_member_busy", "hbfork_member_eligible",
                 "hbfork_member_heartbeat_age_seconds", "hbfork_requests",
                 "hbfork_heartbeats", "hbfork_worker_connections",
                 "hbfork_request_duration_seconds"):
        assert name in families, name
    ready = {s.labels["member"]: s.value for s in families["hbfork_member_ready"].samples}
    assert ready[backend.address] == 5
    eligible = {s.labels["member"]: s.value
                for s in families["hbfork_member_eligible"].samples}
    assert eligible == {backend.address: 1, "127.0.0.9:9": 0}
    requests = {(s.labels["member"], s.labels["code"]): s.value
                for s in families["hbfork_requests"].samples}
    assert requests[(backend.address, "2xx")] == 20
    histogram = families["hbfork_request_duration_seconds"].samples
    count = next(s.value for s in histogram if s.name.endswith("_count"))
    assert count == 20
    accepted = next(s.value for s in families["hbfork_heartbeats"].samples
                    if s.labels["result"] == "accepted")
    assert accepted >= 1


def test_html_page_shows_members_and_workers(cluster):
    proxy = cluster.proxy([{"address": "127.0.0.9:9", "name": "ghost"}],
                          heartbeat={"discover": True})
    backend = cluster.backend("h", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    code, content_type, body = _status_page(proxy, "/")
    page = body.decode()
    assert code == 200 and content_type.startswith("text/html")
    assert backend.address in page and "ghost" in page
    assert "no heartbeat received yet" in page and "eligible" in page
    assert 'http-equiv="refresh"' in page and "<script src" not in page
    for worker in proxy.workers():
        assert str(worker["pid"]) in page
    assert _status_page(proxy, "/nope")[0] == 404


def test_status_cli_against_a_live_master(cluster):
    proxy = cluster.proxy([], heartbeat={"discover": True})
    backend = cluster.backend("cli", 9, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    text = _hbfork("status", "-c", str(proxy.config_path))
    assert text.returncode == 0, text.stderr
    assert backend.address in text.stdout and "eligible" in text.stdout
    assert f"hbfork master {proxy.pid}" in text.stdout
    as_json = _hbfork("status", "-c", str(proxy.config_path), "--json")
    data = json.loads(as_json.stdout)
    assert data["master"]["pid"] == proxy.pid
    assert [m["ready"] for m in data["members"]] == [9]
    # attaching must not have unlinked or disturbed the table
    assert os.path.exists(f"/dev/shm/{proxy.segment()}")
    assert proxy.member(backend.address)["eligible"]
    assert as_json.stderr == ""  # no resource-tracker warnings


def test_status_cli_says_when_no_master_runs(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[proxy]\npidfile = "{tmp_path}/none.pid"\n[heartbeat]\ndiscover = true\n')
    result = _hbfork("status", "-c", str(config))
    assert result.returncode == 1
    assert "no hbfork master is running" in result.stderr


def test_drain_stops_new_requests_and_lets_in_flight_finish(cluster):
    proxy = cluster.proxy([], heartbeat={"discover": True})
    slow = cluster.backend("slow", 50, heartbeat=proxy.heartbeat_address)
    other = cluster.backend("other", 1, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(slow.address, other.address)
    result: dict[str, object] = {}

    def slow_request() -> None:
        conn = None
        for _ in range(50):  # find the slow member (it has 98 % of the weight)
            response, body, conn = get(proxy.url, "/?delay=1500", conn=None)
            conn.close()
            if response.getheader("X-Backend") == "slow":
                result["status"], result["body"] = response.status, body
                return

    thread = threading.Thread(target=slow_request)
    thread.start()
    wait_until(lambda: proxy.member(slow.address)["in_flight"] >= 1, 10,
               message="a request in flight to the slow member")
    drained = _hbfork("ctl", "-c", str(proxy.config_path), "drain", slow.address)
    assert drained.returncode == 0 and "drained" in drained.stdout, drained
    assert proxy.member(slow.address)["state"] == "drained"  # at once, not next heartbeat
    assert spread(proxy.url, 50) == {"other": 50}
    thread.join(10)
    assert result == {"status": 200, "body": b"slow\n"}  # the in-flight one finished
    # the operator's decision survives a reload
    proxy.send_signal(signal.SIGHUP)
    wait_until(lambda: proxy.status()["master"]["config_generation"] == 2, 10,
               message="the reload")
    assert proxy.member(slow.address)["state"] == "drained"
    enabled = _hbfork("ctl", "-c", str(proxy.config_path), "enable", slow.address)
    assert enabled.returncode == 0
    proxy.wait_eligible(slow.address)
    assert "slow" in spread(proxy.url, 50)
    missing = _hbfork("ctl", "-c", str(proxy.config_path), "drain", "10.9.9.9:1")
    assert missing.returncode == 1 and "no member matches" in missing.stdout


def test_control_socket_is_private(cluster):
    proxy = cluster.proxy([{"address": "127.0.0.9:9"}])
    path = str(proxy.config["proxy"]["pidfile"]) + ".ctl"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(path).st_mode)


def test_access_log_combined_plus_and_reopen(cluster, tmp_path):
    log_path = tmp_path / "access.log"
    proxy = cluster.proxy([], heartbeat={"discover": True}, log={"access": str(log_path)})
    backend = cluster.backend("log", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    get(proxy.url, "/first?x=1", headers={"User-Agent": "probe/1", "Referer": "http://r/"}
        )[2].close()
    lines = wait_until(lambda: log_path.exists() and log_path.read_text().splitlines(), 5,
                       message="the access log line (flushed within a second)")
    match = COMBINED_PLUS.match(lines[-1])
    assert match, lines[-1]
    assert match.group(3) == "GET /first?x=1 HTTP/1.1"
    assert match.group(4) == "200" and match.group(6) == "http://r/"
    assert match.group(7) == "probe/1" and match.group(8) == backend.address
    assert float(match.group(9)) <= float(match.group(10)) < 5
    # logrotate: move the file away, SIGUSR1, and new lines go to a new file
    rotated = tmp_path / "access.log.1"
    log_path.rename(rotated)
    proxy.send_signal(signal.SIGUSR1)

    def logged_in_new_file() -> bool:
        get(proxy.url, "/second")[2].close()
        return log_path.exists() and "GET /second" in log_path.read_text()

    wait_until(logged_in_new_file, 10, interval=0.2, message="a line in the reopened log")
    assert "GET /first" in rotated.read_text()
    assert "GET /first" not in log_path.read_text()


def test_storage_file_format_mode_and_round_trip(cluster, tmp_path):
    storage = tmp_path / "hb.dat"
    proxy = cluster.proxy([], heartbeat={"discover": True, "storage": str(storage),
                                         "storage_interval": 1})
    backends = [cluster.backend(n, c, heartbeat=proxy.heartbeat_address)
                for n, c in (("s1", 4), ("s2", 12))]
    proxy.wait_eligible(*(b.address for b in backends))

    def complete() -> list[str]:
        lines = storage.read_text().splitlines() if storage.exists() else []
        return lines if len(lines) == 2 else []

    lines = wait_until(complete, 10, message="hb.dat with both members")
    assert all(STORAGE_LINE.match(line) for line in lines), lines
    assert stat.S_IMODE(os.stat(storage).st_mode) == 0o444
    servers, problems = parse_storage(storage.read_text())
    assert not problems
    by_port = {s.port: s for s in servers}
    assert {by_port[b.port].ready for b in backends} == {4, 12}
    assert all(str(s.ip) == b.ip for b in backends for s in [by_port[b.port]])

    # A second hbfork reads the first one's file instead of UDP: the members appear.
    reader = cluster.proxy([], heartbeat={"discover": True, "source": f"file:{storage}",
                                          "max_age": 5})
    reader.wait_eligible(*(b.address for b in backends))
    assert {reader.member(b.address)["ready"] for b in backends} == {4, 12}


def test_frozen_storage_file_ages_out(cluster, tmp_path):
    # A dead monitor's file: lastseen=0 forever. Apache would keep the member alive; the file's
    # own age must count.
    storage = tmp_path / "frozen.dat"
    backend = cluster.backend("frozen", 5)
    storage.write_text(f"{backend.ip} &ready=5&busy=0&lastseen=0&port={backend.port}\n")
    old = time.time() - 60
    os.utime(storage, (old, old))
    reader = cluster.proxy([{"address": backend.address}],
                           heartbeat={"source": f"file:{storage}", "max_age": 5})
    wait_until(lambda: reader.status()["heartbeats"]["accepted"] >= 1, 10,
               message="the file to be read")
    member = reader.member(backend.address)
    assert member["state"] == "stale"
    assert member["heartbeat_age_seconds"] >= 59
    storage.write_text(f"{backend.ip} &ready=5&busy=0&lastseen=0&port={backend.port}\n")
    reader.wait_eligible(backend.address)


def test_apache_hb_dat_port_80_matches_members_by_ip(cluster, tmp_path):
    # mod_heartmonitor writes port=80 for senders that gave none (all Apache backends): a
    # member on another port must still be found by its IP, as a port-less UDP beat would be.
    storage = tmp_path / "apache-hb.dat"
    backend = cluster.backend("apache-like", 5)
    storage.write_text(f"{backend.ip} &ready=6&busy=1&lastseen=0&port=80\n")
    reader = cluster.proxy([{"address": backend.address}],
                           heartbeat={"source": f"file:{storage}", "max_age": 30})
    reader.wait_eligible(backend.address)
    assert reader.member(backend.address)["ready"] == 6
    assert reader.status()["heartbeats"]["unknown_port"] == 0
