"""The settings of each TOML section, declared once: a dataclass field per key whose metadata
carries its parser (hbfork.core.values) and help text. The loader (`hbfork.core.config`),
`hbfork check` and the configuration reference all read these declarations.
"""

from __future__ import annotations

from dataclasses import dataclass

from hbfork.core.addresses import Endpoint, IPNetwork, parse_endpoint
from hbfork.core.beat_post import http_path
from hbfork.core.client_limits import LimitSettings
from hbfork.core.header_rules import Rule, request_setting, response_setting
from hbfork.core.locations import UNIX_PATH_MAX
from hbfork.core.logformat import access_fields, access_format
from hbfork.core.outlier import OutlierSettings
from hbfork.core.request_id import RequestIdSettings
from hbfork.core.spool import spool_directory
from hbfork.core.syslog import FACILITIES, log_destination
from hbfork.core.tls_settings import TlsSettings
from hbfork.core.values import (
    INT32_MAX,
    MAX_WORKERS,
    boolean,
    choice,
    endpoint,
    endpoint_list,
    grace,
    header_name,
    integer,
    network_list,
    optional_endpoint,
    optional_text,
    route_token,
    seconds,
    setting,
    text_value,
    worker_count,
)

__all__ = ["INT32_MAX", "MAX_WORKERS", "UNIX_PATH_MAX", "text_value"]


# --- the sections


@dataclass(frozen=True)
class ProxySettings:
    listen: tuple[Endpoint, ...] = setting(
        (parse_endpoint("127.0.0.1:8080"),), endpoint_list,
        "client-facing addresses; several allowed, IPv4 or IPv6 (\"[::1]:8080\")",
        '["127.0.0.1:8080"]')
    mode: str = setting("http", choice("http", "tcp"),
                        "\"http\": balance every request; \"tcp\": balance every connection")
    workers: int = setting(worker_count("auto"), worker_count,
                           "worker processes: \"auto\" (one per CPU) or 1-64", '"auto"')
    shutdown_timeout: float = setting(30.0, seconds(),
                                      "seconds old workers may drain on reload or stop")
    drain_delay: float = setting(5.0, seconds(0, 3600, allow_zero=True),
                                 "seconds `hbfork ctl drain-front` keeps accepting after "
                                 "/healthz starts failing (time for the VIP to move)")
    retry: float = setting(10.0, seconds(0, 3600, allow_zero=True),
                           "seconds a member that refused a connect stays out (Apache: 60)")
    max_connections: int = setting(10000, integer(1, 1_000_000),
                                   "client connections per worker; accepting pauses at the limit")
    backlog: int = setting(1024, integer(1, 65535), "listen(2) backlog of each listener")
    worker_timeout: float = setting(30.0, seconds(),
                                    "a worker whose loop has not ticked for this long is replaced")
    user: str | None = setting(None, optional_text,
                               "drop privileges to this user after binding", '""')
    group: str | None = setting(None, optional_text,
                                "drop privileges to this group (default: the user's group)", '""')
    allow_root: bool = setting(False, boolean,
                               "allow serving as root (no `user`); refused otherwise")
    pidfile: str | None = setting(None, optional_text,
                                  "pid file, written atomically; also locates the status table",
                                  '""')
    control_socket: str | None = setting(None, optional_text,
                                         "Unix socket for `hbfork ctl` (default: next to the "
                                         "pidfile, else off)", '""')
    trusted_proxies: tuple[IPNetwork, ...] = setting(
        (), network_list, "CIDRs of proxies whose [http] client_ip_header (and PROXY "
        "headers) are believed; empty = none (a [[listen]] may have its own)", "[]")
    resolve_interval: float = setting(0.0, seconds(0.5, 86400, allow_zero=True),
                                      "resolve members given by host name again this often "
                                      "(seconds); new addresses reload the config as SIGHUP "
                                      "does; 0 = only at start and reload")


@dataclass(frozen=True)
class HeartbeatSettings:
    listen: Endpoint = setting(parse_endpoint("239.0.0.1:27999"), endpoint,
                               "UDP address: a multicast group (joined) or a unicast address",
                               '"239.0.0.1:27999"')
    interface: str | None = setting(None, optional_text,
                                    "local IPv4 address of the interface to join the multicast "
                                    "group on (default: chosen by the routing table)", '""')
    max_members: int = setting(256, integer(1, 65535), "member table capacity")
    max_age: float = setting(10.0, seconds(0, 3600),
                             "a member whose last heartbeat is this old gets no new traffic")
    startup_grace: float | None = setting(
        None, grace,
        "seconds after start during which [[member]] entries not heard from yet are tried "
        "(a failed connect fails over as usual) instead of refused; 0 = off", '"max_age"')
    forget_after: float = setting(30.0, seconds(0, 86400),
                                  "discovered members unseen this long are removed")
    discover: bool = setting(False, boolean,
                             "admit any (allowed) sender as a member, not only [[member]] entries")
    default_port: int = setting(80, integer(1, 65535),
                                "member port when a heartbeat carries no port=")
    require_port_match: bool = setting(False, boolean,
                                       "a heartbeat whose port= names no member of its IP is "
                                       "rejected (unknown_port); false: it updates the IP's "
                                       "members, as Apache matches by IP alone (a Tomcat beats "
                                       "its AJP port 8009)")
    allow: tuple[IPNetwork, ...] = setting((), network_list,
                                           "CIDRs allowed to send heartbeats; empty = any", "[]")
    rate_limit: float = setting(50.0, seconds(0, 1_000_000, allow_zero=True),
                                "heartbeats per second accepted from one source IP "
                                "(burst: 2 s worth); 0 = unlimited")
    max_ready: int = setting(0, integer(0, INT32_MAX),
                             "cap on any member's ready (its weight); 0 = no cap")
    key_file: str | None = setting(None, optional_text,
                                   "secret for signed heartbeats (HMAC-SHA256); one or two lines",
                                   '""')
    require_signature: bool = setting(False, boolean, "reject unsigned heartbeats")
    signature_window: float = setting(10.0, seconds(0, 3600),
                                      "accepted clock difference of a signed heartbeat's ts")
    storage: str | None = setting(None, optional_text,
                                  "also write mod_heartmonitor's hb.dat file here", '""')
    storage_interval: float = setting(5.0, seconds(0, 3600),
                                      "seconds between storage file writes")
    source: str | None = setting(None, optional_text,
                                 "\"file:PATH\": read members from another monitor's hb.dat "
                                 "instead of (or as well as) UDP", '""')
    http_path: str | None = setting(None, http_path,
                                    "also take heartbeats POSTed to this path of the client "
                                    "listeners (Apache's `SetHandler heartbeat`, Tomcat's "
                                    "TcpSender: \"/HeartbeatListener\"); never forwarded; "
                                    "\"\" = off", '""')
    http_listen: tuple[Endpoint, ...] = setting((), endpoint_list,
                                                "the client listeners (IP:port) that take "
                                                "http_path; empty = every listener", "[]")


@dataclass(frozen=True)
class MemberSettings:
    address: Endpoint = setting(None, endpoint, "IP:port of the member (required)")
    lbset: int = setting(0, integer(0, 65535), "lowest set with an eligible member is used")
    name: str = setting("", text_value, "label shown in status and logs (default: the address)")
    max_ready: int = setting(0, integer(0, INT32_MAX),
                             "cap on this member's ready; 0 = the [heartbeat] max_ready")
    require_signature: bool = setting(False, boolean,
                                      "reject this member's unsigned heartbeats")
    disabled: bool = setting(False, boolean,
                             "start disabled (no traffic until `hbfork ctl enable`)")
    route: str = setting("", route_token,
                         "sticky-session route of this member in the pool \"default\" "
                         "(Apache route=)")
    max_conns: int = setting(0, integer(0, 1_000_000),
                             "most requests (TCP: connections) in flight to it at once; "
                             "0 = ready + busy from its heartbeats")

    @property
    def label(self) -> str:
        return self.name or str(self.address)


@dataclass(frozen=True)
class HttpSettings:
    connect_timeout: float = setting(3.0, seconds(0, 600),
                                     "seconds to connect to a member (both modes)")
    response_timeout: float = setting(60.0, seconds(0, 86400),
                                      "seconds to wait for a member's response head (504 after)")
    retries: int = setting(2, integer(0, 100),
                           "other members tried after a connect failure (both modes)")
    client_timeout: float = setting(60.0, seconds(0, 86400),
                                    "idle seconds on a client connection, or a member "
                                    "connection mid-transfer, before it is closed")
    keepalive_timeout: float = setting(15.0, seconds(0, 86400),
                                       "idle seconds a client keep-alive connection is kept")
    header_timeout: float = setting(10.0, seconds(0, 3600),
                                    "seconds a client has to send a whole request head (408)")
    max_request_line: int = setting(8192, integer(64, 1 << 20),
                                    "longest request line in bytes (414 beyond)")
    max_header_size: int = setting(16384, integer(256, 1 << 22),
                                   "largest request head in bytes (431 beyond)")
    max_body_size: int = setting(0, integer(0, 1 << 62),
                                 "largest request body in bytes (413 beyond); 0 = no limit")
    # Slow clients (docs/security.md): a request body is read into memory, up to
    # request_buffering bytes, before a member is chosen; bodies and responses must then keep
    # a minimum rate while a member is held (mod_reqtimeout's body=20,MinRate=500 model).
    request_buffering: int = setting(65536, integer(0, 1 << 24),
                                     "request body bytes read into memory before a member is "
                                     "chosen (the whole body when smaller); 0 = choose the "
                                     "member at the head")
    body_timeout: float = setting(20.0, seconds(0, 86400, allow_zero=True),
                                  "seconds a request body may take, plus one second per "
                                  "body_min_rate bytes (408 after); 0 = no limit")
    body_min_rate: int = setting(500, integer(0, 1 << 30),
                                 "bytes per second a request body must keep after "
                                 "body_timeout; 0 = body_timeout is a whole-body deadline")
    send_timeout: float = setting(20.0, seconds(0, 86400, allow_zero=True),
                                  "window in seconds: a client behind in reading a response "
                                  "while its member is held must take send_min_rate bytes a "
                                  "second in each (else cut); 0 = no limit")
    send_min_rate: int = setting(500, integer(0, 1 << 30),
                                 "bytes per second a client behind must read at, per "
                                 "send_timeout window; 0 = one byte per window (nginx's "
                                 "send_timeout)")
    # Response spooling (hbfork.core.spool, nginx's proxy_max_temp_file_size model): the rest
    # of a response its client reads slowly goes to a nameless temporary file, so its member
    # is free once it has sent everything. Only a client that lags is spooled (behind for a
    # quarter second, taking < 16 MiB/s): a fast client is relayed as without it (100 MiB
    # downloads, curl, spool on/off in the same minute: 619-950 against 642-983 MiB/s).
    response_spool_max: int = setting(1 << 30, integer(0, 1 << 50),
                                      "most bytes of one response written to a temporary file "
                                      "when its client lags behind its member (the member is "
                                      "then free once it has sent all; a client that keeps up "
                                      "is never spooled); beyond it the member is held back; "
                                      "0 = off (1 GiB is nginx's proxy_max_temp_file_size)")
    response_spool_total: int = setting(4 << 30, integer(0, 1 << 50),
                                        "most bytes one worker's spool files hold together; "
                                        "beyond it members are held back")
    response_spool_dir: str = setting("", spool_directory,
                                      "directory for the spool files (opened without a name: "
                                      "nothing is ever left in it); \"\" = the system's "
                                      "temporary directory ($TMPDIR, else /tmp)", '""')
    forwarded_headers: bool = setting(True, boolean,
                                      "add X-Forwarded-For, -Proto and -Host")
    client_ip_header: str = setting("X-Forwarded-For", header_name,
                                    "the header naming the client, read only from [proxy] "
                                    "trusted_proxies (mod_remoteip's RemoteIPHeader)",
                                    '"X-Forwarded-For"')
    # Measured: one worker at 128 concurrent requests to one member spent 57 µs per request
    # with 32 (each response beyond them closed its member connection, and the next request
    # dialled again) and 35 with 256.
    pool_size: int = setting(256, integer(0, 10000),
                             "idle keep-alive connections kept per member per worker")
    pool_idle_timeout: float = setting(30.0, seconds(0, 86400),
                                       "idle seconds a pooled member connection is kept")
    fast_path: bool = setting(True, boolean,
                              "serve common exchanges (a whole GET-like head in one read, a "
                              "pooled member connection, a Content-Length response) by the "
                              "lean fast path; false: every request by the general path")
    request_headers: tuple[Rule, ...] = request_setting("on every listener")
    response_headers: tuple[Rule, ...] = response_setting("on every listener")


@dataclass(frozen=True)
class BalanceSettings:
    weighting: str = setting("corrected", choice("corrected", "reported"),
                             "\"corrected\": ready minus what this front sent since the "
                             "member's heartbeat; \"reported\": ready as reported (Apache's "
                             "lbmethod_heartbeat)", '"corrected"')
    pick: str = setting("weighted", choice("weighted", "p2c"),
                        "\"weighted\": random in proportion to the weights; \"p2c\": the "
                        "better of two random members", '"weighted"')
    slow_start: float = setting(0.0, seconds(0, 3600, allow_zero=True),
                                "seconds over which a member that (re)joins ramps up from "
                                "~0 to its full weight; 0 = off")
    queue_timeout: float = setting(5.0, seconds(0, 3600, allow_zero=True),
                                   "seconds a request waits at the front when every member "
                                   "is full, before 503; 0 = answer 503 at once")
    queue_max: int = setting(10000, integer(0, 1_000_000),
                             "requests (TCP mode: connections) waiting per pool, counted "
                             "over all workers, before 503 \"queue full\"")
    queue_fresh_offset: float = setting(0.0, seconds(0, 3600, allow_zero=True),
                                        "seconds later than its arrival an HTTP request "
                                        "ranks in the front queue when its connection has no "
                                        "quick exchange behind it (a new connection, or its "
                                        "last response lagged); 0 = arrival order (FIFO), as "
                                        "TCP mode always is")
    max_capacity: int = setting(10000, integer(1, 1_000_000),
                                "cap on a member's capacity (ready + busy from its heartbeat, "
                                "or max_conns)")


@dataclass(frozen=True)
class StatusSettings:
    listen: Endpoint | None = setting(parse_endpoint("127.0.0.1:8081"), optional_endpoint,
                                      "status page, /status.json and /metrics; \"\" = off",
                                      '"127.0.0.1:8081"')
    allow: tuple[IPNetwork, ...] = setting((), network_list,
                                           "CIDRs allowed to read the status listener; "
                                           "empty = any", "[]")


@dataclass(frozen=True)
class LogSettings:
    level: str = setting("info", choice("debug", "info", "warning", "error"), "error log level")
    error: str | None = setting(None, log_destination,
                                "error log: a file, or syslog (as access); default: stderr",
                                '""')
    access: str | None = setting(None, log_destination,
                                 "access log: a file, \"syslog:udp://IP[:PORT]\" or "
                                 "\"syslog:unix:/PATH\" (RFC 5424); default: off", '""')
    access_format: str = setting("combined+", access_format,
                                 "\"combined\" (Apache), \"combined+\" (plus member and "
                                 "timings), \"json\", or an Apache LogFormat string "
                                 "(\"%h %l %u %t \\\"%r\\\" %>s %b\"); TCP mode: one line "
                                 "per connection", '"combined+"')
    access_fields: tuple[str, ...] = setting((), access_fields,
                                             "json: the fields each line carries (default: "
                                             "the combined+ fields)", "[]")
    syslog_facility: str = setting("local7", choice(*FACILITIES),
                                   "facility of syslog messages (access and error logs)",
                                   '"local7"')


SECTIONS: dict[str, type] = {
    "proxy": ProxySettings,
    "heartbeat": HeartbeatSettings,
    "http": HttpSettings,
    "balance": BalanceSettings,
    "tls": TlsSettings,
    "status": StatusSettings,
    "log": LogSettings,
    "outlier": OutlierSettings,
    "request_id": RequestIdSettings,
    "limits": LimitSettings,
}
