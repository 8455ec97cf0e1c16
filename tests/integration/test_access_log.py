"""The access log with real hbfork processes: LogFormat strings and JSON fields written to a
file, syslog datagrams to a receiver bound here, TCP mode's connection lines, and the member
named in every answer it caused (502 and 504 included), on both HTTP paths."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess

import pytest

from hbfork.core.syslog import parse_message
from tests.integration.harness import HBFORK, free_port, get, wait_until

LOGFORMAT = ('%h %l %u %t "%r" %>s %b "%{Referer}i" %{X-Request-ID}i %{X-Backend}o '
             '%{BALANCER_WORKER_NAME}e %D %m %U%q %H %v %X')
LINE = re.compile(r'^(\S+) - - \[[^]]+\] "([^"]*)" (\d{3}) (\d+|-) "((?:[^"\\]|\\.)*)" '
                  r'(\S+) (\S+) (\S+) (\d+) (\S+) (\S+) (\S+) (\S+) ([+-])$')
COMBINED_PLUS_TAIL = re.compile(r'" (\d{3}) (\d+|-) "[^"]*" "[^"]*" member=(\S+) '
                                r'upstream=(\S+) total=(\S+)$')


def _lines(path, count: int) -> list[str]:
    return wait_until(lambda: path.exists() and len(lines := path.read_text().splitlines())
                      >= count and lines, 10, message=f"{count} access log lines in {path}")


@pytest.mark.parametrize("fast_path", [True, False])
def test_logformat_string_to_a_file(cluster, tmp_path, fast_path):
    log_path = tmp_path / "access.log"
    proxy = cluster.proxy([], heartbeat={"discover": True}, http={"fast_path": fast_path},
                          log={"access": str(log_path), "access_format": LOGFORMAT})
    backend = cluster.backend("fmt", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    get(proxy.url, "/p/q?x=1", headers={"Referer": 'http://r/"x"', "X-Request-ID": "rid-42",
                                         "User-Agent": "probe"})[2].close()
    match = LINE.match(_lines(log_path, 1)[-1])
    assert match, _lines(log_path, 1)[-1]
    client, request, status, size, referer, rid, backend_name, url, micros, method, path, \
        proto, host, keep = match.groups()
    assert client == "127.0.0.1" and request == "GET /p/q?x=1 HTTP/1.1" and status == "200"
    assert int(size) > 0 and referer == 'http://r/\\"x\\"' and rid == "rid-42"
    assert backend_name == "fmt"  # a response header: on the fast path too
    assert url == f"http://{backend.address}" and 0 < int(micros) < 5_000_000
    assert (method, path, proto, host, keep) == ("GET", "/p/q?x=1", "HTTP/1.1", "127.0.0.1",
                                                 "+")


def test_json_with_chosen_fields(cluster, tmp_path):
    log_path = tmp_path / "access.json"
    proxy = cluster.proxy([], heartbeat={"discover": True},
                          log={"access": str(log_path), "access_format": "json",
                               "access_fields": ["client", "method", "path", "status",
                                                 "member", "pool", "total_seconds"]})
    backend = cluster.backend("js", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    get(proxy.url, "/j")[2].close()
    record = json.loads(_lines(log_path, 1)[-1])
    assert list(record) == ["client", "method", "path", "status", "member", "pool",
                            "total_seconds"]
    assert record["path"] == "/j" and record["status"] == 200
    assert record["member"] == backend.address and record["pool"] == "default"


def _receiver() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    return sock, sock.getsockname()[1]


def _received(sock: socket.socket, found: list[dict], want) -> list[dict]:
    try:
        while True:
            found.append(parse_message(sock.recv(65536)))
    except TimeoutError:
        pass
    return [m for m in found if want(m)]


def test_access_and_error_logs_to_a_udp_syslog_receiver(cluster):
    sock, port = _receiver()
    with sock:
        destination = f"syslog:udp://127.0.0.1:{port}"
        proxy = cluster.proxy([], heartbeat={"discover": True},
                              log={"access": destination, "error": destination,
                                   "syslog_facility": "local3"})
        backend = cluster.backend("sys", 5, heartbeat=proxy.heartbeat_address)
        proxy.wait_eligible(backend.address)
        get(proxy.url, "/via-syslog")[2].close()
        found: list[dict] = []
        access = wait_until(lambda: _received(sock, found, lambda m: m["msgid"] == "access"),
                            10, message="an access log datagram")
        assert access[0]["facility"] == 19 and access[0]["severity"] == 6
        assert access[0]["app"] == "hbfork" and int(access[0]["procid"]) > 0
        assert '"GET /via-syslog HTTP/1.1" 200' in access[0]["message"]
        assert f"member={backend.address}" in access[0]["message"]
        errors = _received(sock, found, lambda m: m["msgid"] == "error")
        assert errors and "hbfork[" in errors[0]["message"], found


def test_tcp_mode_logs_one_line_per_connection(cluster, tmp_path):
    log_path = tmp_path / "tcp.log"
    proxy = cluster.proxy([], proxy={"mode": "tcp"}, heartbeat={"discover": True},
                          log={"access": str(log_path)})
    backend = cluster.backend("tcp", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    request = b"GET /tcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    received = b""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as conn:
        conn.sendall(request)
        while chunk := conn.recv(65536):
            received += chunk
    line = _lines(log_path, 1)[-1]
    match = re.match(r'^127\.0\.0\.1 - - \[[^]]+\] "TCP" (\S+) member=(\S+) in=(\d+) '
                     r'out=(\d+) total=(\S+)$', line)
    assert match, line
    assert match.group(1) == "closed" and match.group(2) == backend.address
    assert int(match.group(3)) == len(request) and int(match.group(4)) == len(received)
    assert 0 < float(match.group(5)) < 5


def test_tcp_mode_connect_failure_logs_why_and_the_member(cluster, tmp_path):
    """A [[member]] not heard from yet is tried (startup grace); its refused connect is the
    connection's outcome, and the log names it."""
    log_path = tmp_path / "tcp.log"
    member = f"127.0.0.9:{free_port('127.0.0.9')}"
    proxy = cluster.proxy([{"address": member}],
                          proxy={"mode": "tcp"}, balance={"queue_timeout": 0},
                          log={"access": str(log_path), "access_format": "json"})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as conn:
        assert conn.recv(10) == b""  # closed: nobody to relay to
    record = json.loads(_lines(log_path, 1)[-1])
    assert record["outcome"] == "connect_failed" and record["bytes_in"] == 0
    assert record["member"] == member


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize(("fault", "status"), [("reset", "502"), ("hang", "504")])
def test_a_dying_members_answer_names_it(cluster, tmp_path, fast_path, fault, status):
    """Issue 25 item 7: a 502 (or 504) caused by a member is logged with that member."""
    log_path = tmp_path / "access.log"
    proxy = cluster.proxy([], heartbeat={"discover": True},
                          http={"fast_path": fast_path, "response_timeout": 1, "retries": 0},
                          log={"access": str(log_path)})
    backend = cluster.backend("dying", 5, heartbeat=proxy.heartbeat_address,
                              extra=("--fault", fault))
    proxy.wait_eligible(backend.address)
    response, _, conn = get(proxy.url, "/dies")
    conn.close()
    assert response.status == int(status)
    match = COMBINED_PLUS_TAIL.search(_lines(log_path, 1)[-1])
    assert match, _lines(log_path, 1)
    assert match.group(1) == status and match.group(3) == backend.address
    wait_until(lambda: f"member {backend.address}: " in proxy.output(), 5,
               message="the error log line naming the member")


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("access_format", "%h %Z", "'%Z' is not supported"),
    ("access_fields", ["client", "bogus"], "unknown field 'bogus'"),
    ("access", "syslog:udp://loghost:514", "not an IP address"),
])
def test_a_bad_log_setting_is_a_config_error(tmp_path, key, value, problem):
    config = tmp_path / "bad.toml"
    config.write_text(f"[log]\n{key} = {json.dumps(value)}\n")
    result = subprocess.run([*HBFORK, "check", "-c", str(config)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode != 0
    assert str(config) in result.stderr and key in result.stderr and problem in result.stderr


def test_access_log_to_a_unix_syslog_socket(cluster, tmp_path):
    path = tmp_path / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.2)
        proxy = cluster.proxy([], heartbeat={"discover": True},
                              log={"access": f"syslog:unix:{path}",
                                   "access_format": "%h %>s %U %{member}e"})
        backend = cluster.backend("ux", 5, heartbeat=proxy.heartbeat_address)
        proxy.wait_eligible(backend.address)
        get(proxy.url, "/over-unix")[2].close()
        found: list[dict] = []
        access = wait_until(lambda: _received(sock, found, lambda m: m["msgid"] == "access"),
                            10, message="an access log datagram on the unix socket")
        assert access[0]["message"] == f"127.0.0.1 200 /over-unix {backend.address}"
        assert access[0]["facility"] == 23  # local7, the default


def test_no_syslog_daemon_drops_lines_and_never_stalls(cluster, tmp_path):
    proxy = cluster.proxy([], heartbeat={"discover": True},
                          log={"access": f"syslog:unix:{tmp_path}/nobody-listens"})
    backend = cluster.backend("nd", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    conn = None
    for _ in range(50):
        response, _, conn = get(proxy.url, "/x", conn=conn)
        assert response.status == 200
    conn.close()
    wait_until(lambda: "lines dropped" in proxy.output(), 10,
               message="the dropped lines reported")


def test_a_bad_format_on_reload_keeps_the_running_log(cluster, tmp_path):
    log_path = tmp_path / "access.log"
    proxy = cluster.proxy([], heartbeat={"discover": True},
                          log={"access": str(log_path), "access_format": "%h %>s %U"})
    backend = cluster.backend("rl", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    proxy.config["log"]["access_format"] = "%h %>s %{VAR}e"
    proxy.write_config()
    proxy.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in proxy.output(), 10, message="the failed reload")
    assert "access_format" in proxy.output() and "'%{VAR}e' is not supported" in proxy.output()
    get(proxy.url, "/after")[2].close()
    assert _lines(log_path, 1)[-1] == "127.0.0.1 200 /after"
