"""What the access log knows of one request (HTTP mode) or one connection (TCP mode), for the
formats that need more than the default line: LogFormat strings (hbfork.core.logformat) and
JSON with chosen fields.

Fields are computed when a format first asks for them (HttpFields is a dict that fills
itself), so a format pays only for what it logs; the default formats (combined, combined+,
json) keep using the exchange's own `log_fields`, so their cost per request is what it was.
The client address comes from one place, the exchange's `log_client` (the connection's peer
today; the real client once trusted proxies say who it is).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hbfork.core.logformat import ALL_FIELDS, HTTP_FIELDS, TCP_FIELDS

__all__ = ["ALL_FIELDS", "HTTP_FIELDS", "TCP_FIELDS", "HttpFields", "HttpRecord", "TcpRecord"]


def _values(head: bytes, lower: bytes, name: bytes) -> list[bytes]:
    """The values of every field `name` (lower-case) of a head (`lower`: the head, lowered)."""
    needle = b"\r\n" + name + b":"
    out = []
    at = lower.find(needle)
    while at >= 0:
        start = at + len(needle)
        end = head.find(b"\r\n", start)
        out.append(head[start:end].strip(b" \t"))
        at = lower.find(needle, end)
    return out


class HttpFields(dict[str, Any]):
    """A finished request's fields, each computed on first use (`ex`: the
    hbfork.proxy.http.exchange.Exchange; `target`: the member that answered or caused the
    answer, None when none did)."""

    __slots__ = ("ex", "now", "pid", "port", "status", "target")

    def __init__(self, ex: Any, status: int, target: Any, now: float, port: int,
                 pid: int) -> None:
        super().__init__()
        self.ex, self.status, self.target, self.now = ex, status, target, now
        self.port, self.pid = port, pid

    def __missing__(self, key: str) -> Any:
        compute = _COMPUTE.get(key)
        value = compute(self) if compute is not None else None
        self[key] = value
        return value


def _target_parts(f: HttpFields, key: str) -> str:
    request = f.ex.request
    if request is None:
        f.update(method=None, path=None, query=None, protocol=None)
    else:
        path, _, query = request.target.partition(b"?")
        f.update(method=request.method.decode("latin-1"), path=path.decode("latin-1"),
                 query=query.decode("latin-1"),
                 protocol="HTTP/1.1" if request.version == 11 else "HTTP/1.0")
    return f[key]


def _host_and_port(f: HttpFields, key: str) -> Any:
    """The Host field's name ([v6] kept bracketed) and port (the listener's when it has
    none), as Apache's %v and %p read them with UseCanonicalName Off."""
    request = f.ex.request
    text = request.host.decode("latin-1") if request is not None else ""
    name, colon, port = text.rpartition(":")
    if not colon or "]" in port or not port.isdigit():
        f.update(host=text or None, port=f.port)
    else:
        f.update(host=name, port=int(port))
    return f[key]


def _request_line(f: HttpFields) -> str:
    request = f.ex.request
    if request is None:
        return "-"
    return f"{request.method.decode('latin-1')} {request.target.decode('latin-1')} " \
           f"HTTP/{'1.1' if request.version == 11 else '1.0'}"


def _pool(f: HttpFields) -> Any:
    decision = f.ex.decision
    return decision.pool if decision is not None else None


def _member_url(f: HttpFields) -> str | None:
    if f.target is None:
        return None
    pool = _pool(f)
    scheme = "https" if pool is not None and pool.tls_context is not None else "http"
    return f"{scheme}://{f.target.address}"


def _header_text(name: bytes) -> Callable[[HttpFields], str]:
    def compute(f: HttpFields) -> str:
        value = HttpRecord(f).request_header(name)
        return value.decode("latin-1") if value is not None else ""
    return compute


def _started(f: HttpFields) -> float:
    wall = time.time()
    started = f.ex.exchange_started
    return wall - (f.now - started) if started else wall


_COMPUTE: dict[str, Callable[[HttpFields], Any]] = {
    "client": lambda f: f.ex.log_client,
    "peer": lambda f: f.ex.client_ip,
    "request": _request_line,
    **{key: (lambda k: lambda f: _target_parts(f, k))(key)
       for key in ("method", "path", "query", "protocol")},
    "host": lambda f: _host_and_port(f, "host"),
    "port": lambda f: _host_and_port(f, "port"),
    "status": lambda f: f.status,
    "bytes": lambda f: f.ex.bytes_to_client,
    "bytes_out": lambda f: f.ex.bytes_to_client,  # %O: the body (head bytes are not counted)
    "referer": _header_text(b"referer"),
    "user_agent": _header_text(b"user-agent"),
    "member": lambda f: f.target.address if f.target is not None else "",
    "member_name": lambda f: f.target.label if f.target is not None else None,
    "member_url": _member_url,
    "pool": lambda f: pool.name if (pool := _pool(f)) is not None else None,
    "pool_url": lambda f: f"balancer://{pool.name}" if (pool := _pool(f)) is not None
    else None,
    "upstream_seconds": lambda f: f.now - f.ex.member_started
    if f.ex.member_started and f.target is not None else None,
    "total_seconds": lambda f: f.now - (f.ex.exchange_started or f.now),
    "keep_alive": lambda f: f.ex.keep_alive,
    # b"" when request IDs are off ([request_id] header = "")
    "request_id": lambda f: f.ex.request_id.decode("latin-1") or None,
    "pid": lambda f: f.pid,
    "started": _started,
    # how it ended when not plainly (hbfork.core.slow_clients: slow_body, slow_reader...)
    "outcome": lambda f: f.ex.outcome or None,
}


class HttpRecord:
    """A request as hbfork.core.logformat reads it: its fields and its headers."""

    __slots__ = ("_lower_request", "_lower_response", "ex", "fields")

    def __init__(self, fields: HttpFields) -> None:
        self.fields = fields
        self.ex = fields.ex
        self._lower_request: bytes | None = None
        self._lower_response: bytes | None = None

    def request_header(self, lower_name: bytes) -> bytes | None:
        ex = self.ex
        head = ex.lean_head
        if head is not None:  # a fast-path request: its fields were not parsed
            if self._lower_request is None:
                self._lower_request = head.lower()
            values = _values(head, self._lower_request, lower_name)
        elif ex.request is not None:
            values = [v for _, lower, v in ex.request.headers if lower == lower_name]
        else:
            return None
        return b", ".join(values) if values else None

    def response_header(self, lower_name: bytes) -> bytes | None:
        ex = self.ex
        head = ex.lean_response
        if head is not None:  # a fast-path response: its fields were not parsed
            if self._lower_response is None:
                self._lower_response = head.lower()
            values = _values(head, self._lower_response, lower_name)
        elif ex.response is not None:
            values = [v for _, lower, v in ex.response.headers if lower == lower_name]
        else:
            return None
        return b", ".join(values) if values else None


class TcpFields(dict[str, Any]):
    """A TCP-mode connection's fields (hbfork.proxy.tcp's); what it lacks is None."""

    def __missing__(self, key: str) -> None:
        return None


class TcpRecord:
    """A TCP-mode connection: fields only (it has no headers)."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = TcpFields(fields)

    def request_header(self, lower_name: bytes) -> bytes | None:
        return None

    def response_header(self, lower_name: bytes) -> bytes | None:
        return None
