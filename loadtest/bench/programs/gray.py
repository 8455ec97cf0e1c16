"""scripts/bench-gray: the members of each gray-failure scenario and the three fronts' configs
(pure: text in, text out; the runner writes and starts them).

Every front gets the same timeouts (connect 3 s, response 2 s: hbfork's `response_timeout =
2` of issue 23's measurement), the same number of other members tried (2), a retry on the same
kinds of failure, including the 5xx statuses, and its own way of taking a failing member out:

    hbfork   [outlier] defaults (consecutive_5xx 5, consecutive_gateway_failures 5,
             failure_rate 0.25 over 10 s with >= 20 requests, eject_time 30,
             max_ejected_share 0.5); [[pool]] retry_on = the defaults ("reset",
             "empty-response", "malformed-response", "timeout") + 500, 502, 503, 504;
             retries 2 (the default)
    HAProxy  balance leastconn; `option httpchk GET /` every 1 s (fall 2, rise 2,
             timeout check 1 s); `observe layer7 error-limit 5 on-error mark-down`;
             `retries 2`, `option redispatch 1`, `retry-on conn-failure empty-response
             junk-response response-timeout 500 502 503 504`
    nginx    least_conn (zone: one state for its workers); `max_fails=5 fail_timeout=30s`;
             `proxy_next_upstream error timeout invalid_header http_500 http_502 http_503
             http_504`, `proxy_next_upstream_tries 3` (the first + 2 others)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

FRONTS = ("hbfork", "haproxy", "nginx")
LABELS = {"hbfork": "hbfork", "haproxy": "HAProxy", "nginx": "nginx"}
CONNECT_TIMEOUT = 3
RESPONSE_TIMEOUT = 2
RETRIES = 2                  # other members tried after the first
RETRY_STATUSES = (500, 502, 503, 504)
HBFORK_RETRY_ON = ("reset", "empty-response", "malformed-response", "timeout",
                   *RETRY_STATUSES)
ERROR_LIMIT = 5              # HAProxy observe layer7: errors in a row before mark-down
NGINX_MAX_FAILS, NGINX_FAIL_TIMEOUT = 5, 30


@dataclass(frozen=True)
class Scenario:
    """How the third member is run, and what "the fault starts" means for it."""

    name: str
    what: str
    args: tuple[str, ...] = ()           # `hbfork backend` options of the third member
    trigger: str = "sighup"              # "sighup": the fault starts; "sigterm": the stop
                                         # starts; "": it is like this from the start
    ejects: bool = True                  # a front is expected to take the member out
    notes: tuple[str, ...] = field(default=())


SCENARIOS = {s.name: s for s in (
    Scenario("healthy", "no fault: the reference of what each front serves here",
             (), trigger="", ejects=False),
    Scenario("5xx-all", "answers 500 to every request at once",
             ("--fault", "status", "--fault-status", "500", "--fault-on-signal")),
    Scenario("5xx-30", "answers 502 at once to 30 % of requests",
             ("--fault", "status", "--fault-rate", "0.3", "--fault-status", "502",
              "--fault-on-signal")),
    Scenario("hang", "reads every request and never answers",
             ("--fault", "hang", "--fault-on-signal")),
    Scenario("graceful-stop", "a healthy member stopped gracefully (SIGTERM): it stops "
             "beating and accepting, closes its idle keep-alive connections, answers what is "
             "in flight with Connection: close; its listening socket stays open 1 s (the "
             "kernel completes new connections), then closes (those are reset) and it exits",
             ("--stop", "graceful", "--stop-drain", "1"), trigger="sigterm", ejects=False),
    Scenario("slow", "answers every request after 200 ms (the others at once)",
             ("--delay-ms", "200"), trigger="", ejects=False),
)}


def member_argv(python: str, address: str, heartbeat: str, name: str, workers: int,
                extra: tuple[str, ...] = (), arrivals: Path | None = None) -> list[str]:
    """`hbfork backend` beating its true idle/busy workers to `heartbeat` (unicast)."""
    argv = [python, "-m", "hbfork", "backend", "--listen", address, "--heartbeat", heartbeat,
            "--name", name, "--workers", str(workers), *extra]
    return argv + (["--arrivals", str(arrivals)] if arrivals else [])


def hbfork_conf(directory: Path, port: int, status_port: int, heartbeat: str,
                members: list[str]) -> str:
    retry_on = ", ".join(f'"{x}"' if isinstance(x, str) else str(x) for x in HBFORK_RETRY_ON)
    listed = ", ".join(f'"{m}"' for m in members)
    return f"""# scripts/bench-gray: hbfork, [outlier] defaults
[proxy]
listen = ["127.0.0.1:{port}"]
mode = "http"
workers = "auto"
allow_root = true
pidfile = "{directory}/hbfork.pid"
shutdown_timeout = 2

[heartbeat]
listen = "{heartbeat}"

[http]
connect_timeout = {CONNECT_TIMEOUT}
response_timeout = {RESPONSE_TIMEOUT}
retries = {RETRIES}
keepalive_timeout = 300
client_timeout = 300

[status]
listen = "127.0.0.1:{status_port}"

[log]
level = "warning"
error = "{directory}/hbfork.log"

[[pool]]
name = "default"
members = [{listed}]
retry_on = [{retry_on}]
"""


def haproxy_conf(directory: Path, port: int, members: list[str]) -> str:
    servers = "".join(
        f"    server m{i} {m} check inter 1s fall 2 rise 2 observe layer7 "
        f"error-limit {ERROR_LIMIT} on-error mark-down\n" for i, m in enumerate(members, 1))
    statuses = " ".join(map(str, RETRY_STATUSES))
    return f"""# scripts/bench-gray: HAProxy, httpchk + observe layer7 + retry-on
global
    maxconn 4000
    pidfile {directory}/haproxy.pid
    stats socket {directory}/haproxy.sock mode 600 level user
    log stderr format short local0 warning
defaults
    mode http
    timeout connect {CONNECT_TIMEOUT}s
    timeout client 300s
    timeout server {RESPONSE_TIMEOUT}s
    timeout http-keep-alive 300s
    timeout check 1s
    retries {RETRIES}
    option redispatch 1
    retry-on conn-failure empty-response junk-response response-timeout {statuses}
frontend front
    bind 127.0.0.1:{port}
    default_backend members
backend members
    balance leastconn
    option httpchk GET /
    http-check expect status 200
{servers}"""


def nginx_conf(directory: Path, port: int, members: list[str]) -> str:
    servers = "".join(f"        server {m} max_fails={NGINX_MAX_FAILS} "
                      f"fail_timeout={NGINX_FAIL_TIMEOUT}s;\n" for m in members)
    statuses = " ".join(f"http_{s}" for s in RETRY_STATUSES)
    return f"""# scripts/bench-gray: nginx, proxy_next_upstream + max_fails
daemon off;
worker_processes auto;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 10000; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream members {{
        zone members 64k;
        least_conn;
{servers}        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://members;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout {CONNECT_TIMEOUT}s;
            proxy_read_timeout {RESPONSE_TIMEOUT}s;
            proxy_next_upstream error timeout invalid_header {statuses};
            proxy_next_upstream_tries {RETRIES + 1};
        }}
    }}
}}
"""


def settings_lines() -> list[str]:
    """Each front's fault-handling settings, for the report (from the constants above)."""
    statuses = ", ".join(map(str, RETRY_STATUSES))
    return [
        f"* **hbfork**: `[outlier]` defaults (consecutive_5xx 5, consecutive_gateway_failures "
        "5, failure_rate 0.25 over 10 s with ≥ 20 requests, eject_time 30 s, "
        "max_ejected_share 0.5); `[http] response_timeout = "
        f"{RESPONSE_TIMEOUT}`, `connect_timeout = {CONNECT_TIMEOUT}`, `retries = {RETRIES}` "
        "(the default); `[[pool]] retry_on = [\"reset\", \"empty-response\", "
        f"\"malformed-response\", \"timeout\", {statuses}]` (the defaults plus the statuses "
        "HAProxy and nginx retry on); heartbeats every 1 s, max_age 10 s (default).",
        "* **HAProxy**: `balance leastconn`; `option httpchk GET /`, `http-check expect status "
        "200`, `check inter 1s fall 2 rise 2`, `timeout check 1s`; `observe layer7 error-limit "
        f"{ERROR_LIMIT} on-error mark-down`; `retries {RETRIES}`, `option redispatch 1`, "
        "`retry-on conn-failure empty-response junk-response response-timeout "
        f"{' '.join(map(str, RETRY_STATUSES))}`; `timeout connect {CONNECT_TIMEOUT}s`, "
        f"`timeout server {RESPONSE_TIMEOUT}s`.",
        "* **nginx**: `least_conn` with a shared `zone`; `max_fails="
        f"{NGINX_MAX_FAILS} fail_timeout={NGINX_FAIL_TIMEOUT}s`; `proxy_next_upstream error "
        f"timeout invalid_header {' '.join(f'http_{s}' for s in RETRY_STATUSES)}`, "
        f"`proxy_next_upstream_tries {RETRIES + 1}`; `proxy_connect_timeout "
        f"{CONNECT_TIMEOUT}s`, `proxy_read_timeout {RESPONSE_TIMEOUT}s`; upstream keepalive 64.",
    ]
