"""What the access log knows of one request (HTTP mode) or one connection (TCP mode), for the
formats that need more than the default line: LogFormat strings (hbfork.core.logformat) and
JSON with chosen fields.

Only the formats that ask for these fields build them: the default formats (combined,
combined+, json) keep using the exchange's own `log_fields`, so their cost per request is what
it was. The client address comes from one place, the exchange's `log_client` (the peer today;
the real client once trusted proxies say so).
"""

from __future__ import annotations

import time
from typing import Any

from hbfork.core.lean import field_values
from hbfork.core.logformat import ALL_FIELDS, HTTP_FIELDS, TCP_FIELDS

__all__ = ["ALL_FIELDS", "HTTP_FIELDS", "TCP_FIELDS", "HttpRecord", "TcpRecord", "http_fields"]

def _host_and_port(host: bytes, default_port: int) -> tuple[str, int]:
    """The Host field's name ([v6] kept bracketed) and port (`default_port` when it has
    none), as Apache's %v and %p read them with UseCanonicalName Off."""
    text = host.decode("latin-1")
    name, colon, port = text.rpartition(":")
    if not colon or "]" in port or not port.isdigit():
        return text, default_port
    return name, int(port)


def http_fields(ex: Any, status: int, target: Any, now: float, port: int,
                pid: int) -> dict[str, Any]:
    """The fields of a request that ended (`ex`: hbfork.proxy.http.exchange.Exchange;
    `target`: the member that answered or caused the answer, None when none did)."""
    fields: dict[str, Any] = ex.log_fields(status, target, now)
    request = ex.request
    if request is not None:
        path, _, query = request.target.partition(b"?")
        fields.update(method=request.method.decode("latin-1"), path=path.decode("latin-1"),
                      query=query.decode("latin-1"),
                      protocol="HTTP/1.1" if request.version == 11 else "HTTP/1.0")
        fields["host"], port = _host_and_port(request.host, port)
    decision = ex.decision
    pool = decision.pool if decision is not None else None
    if pool is not None:
        fields["pool"] = pool.name
        fields["pool_url"] = f"balancer://{pool.name}"
    if target is not None:
        fields["member_name"] = target.label
        scheme = "https" if pool is not None and pool.tls_context is not None else "http"
        fields["member_url"] = f"{scheme}://{target.address}"
    fields["peer"] = ex.client_ip
    fields["bytes_out"] = fields["bytes"]  # %O: the body (head bytes are not counted here)
    fields["keep_alive"] = ex.keep_alive
    fields["request_id"] = getattr(ex, "request_id", None)  # when request IDs are on
    fields["port"] = port
    fields["pid"] = pid
    wall = time.time()
    fields["started"] = wall - (now - ex.exchange_started) if ex.exchange_started else wall
    return fields


class HttpRecord:
    """A request as hbfork.core.logformat reads it: its fields and its headers."""

    __slots__ = ("ex", "fields")

    def __init__(self, fields: dict[str, Any], ex: Any) -> None:
        self.fields = fields
        self.ex = ex

    def request_header(self, lower_name: bytes) -> bytes | None:
        ex = self.ex
        if ex.lean_head is not None:  # a fast-path request: its fields were not parsed
            values = field_values(ex.lean_head, lower_name)
        elif ex.request is not None:
            values = [v for _, lower, v in ex.request.headers if lower == lower_name]
        else:
            return None
        return b", ".join(values) if values else None

    def response_header(self, lower_name: bytes) -> bytes | None:
        ex = self.ex
        head = ex.lean_response
        if head is not None:  # a fast-path response: its fields were not parsed
            values = field_values(head, lower_name)
        elif ex.response is not None:
            values = [v for _, lower, v in ex.response.headers if lower == lower_name]
        else:
            return None
        return b", ".join(values) if values else None


class TcpRecord:
    """A TCP-mode connection: fields only (it has no headers)."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def request_header(self, lower_name: bytes) -> bytes | None:
        return None

    def response_header(self, lower_name: bytes) -> bytes | None:
        return None
