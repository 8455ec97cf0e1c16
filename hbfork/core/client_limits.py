"""Per-client limits: the [limits] settings and the rules they follow, with no I/O.

Two limits, each 0 (off) by default:

- `connections_per_client`: client connections open at once from one client address;
- `requests_per_second` with `burst`: a token bucket per client, kept as GCRA (the generic cell
  rate algorithm): one number per client, the theoretical arrival time (TAT) of its next
  request, in monotonic nanoseconds. A request at `now` is allowed when it is no more than
  `tolerance` early: TAT - now <= (burst - 1) x interval; it then moves TAT on by one
  interval. That is exactly a bucket of `burst` tokens refilled at `requests_per_second`, in
  one integer a process can update under a short lock (hbfork.table.client_table).

The counts are kept across all workers in one shared table (a per-worker count would let a
client through N workers times). The limits are global, not per listener: a client's budget
is what the front can give it whatever port it uses, as with one nginx `limit_req_zone`.

A client is its address (`key = "address"`) or the value of a request header
(`key = "header:X-Api-Key"`; a request without that header is keyed by its address).
Connections are always counted by address: no header exists when a connection opens.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from hbfork.core.addresses import IPAddress, IPNetwork
from hbfork.core.values import integer, network_list, setting

NS = 1_000_000_000
BUCKET = 8                 # slots per bucket of the shared table (the eviction scope)
MIN_SLOTS, MAX_SLOTS = 1024, 1 << 24
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")  # an HTTP field name (RFC 9110 token)


def _rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not 0 <= value <= 1_000_000 or value != value:
        raise ValueError(f"expected requests per second from 0 (off) to 1000000, got {value!r}")
    if 0 < value < 0.001:
        raise ValueError(f"must be 0 (off) or at least 0.001, got {value!r}")
    return float(value)


def _key(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f'expected "address" or "header:NAME", got {value!r}')
    if value == "address":
        return value
    name = value[len("header:"):] if value.startswith("header:") else None
    if name is None or not _TOKEN.fullmatch(name):
        raise ValueError(f'expected "address" or "header:NAME" with NAME a header field name, '
                         f'got {value!r}')
    return value


@dataclass(frozen=True)
class LimitSettings:
    connections_per_client: int = setting(0, integer(0, 1_000_000),
                                          "client connections open at once per client "
                                          "address, across all workers; more are answered 429 "
                                          "(HTTP) or closed (TCP mode); 0 = off")
    requests_per_second: float = setting(0.0, _rate,
                                         "requests per second per client (a token bucket "
                                         "shared by all workers); more are answered 429 with "
                                         "Retry-After (TCP mode: new connections per second, "
                                         "more are closed); 0 = off", "0")
    burst: int = setting(0, integer(0, 1_000_000),
                         "requests a client may send at once before requests_per_second "
                         "applies (the bucket's size); 0 = one second's worth, at least 1")
    key: str = setting("address", _key,
                       '"address" (the client\'s IP) or "header:NAME" (that request header\'s '
                       "value; its address when absent) for requests_per_second", '"address"')
    exempt: tuple[IPNetwork, ...] = setting((), network_list,
                                            "CIDRs never limited (monitoring, your own "
                                            "proxies)", "[]")
    slots: int = setting(65536, integer(MIN_SLOTS, MAX_SLOTS),
                         "clients the shared table tracks at once (32 bytes each); the least "
                         "recently seen is evicted, and counted, when full; read at start",
                         "65536")

    @property
    def enabled(self) -> bool:
        return bool(self.connections_per_client or self.requests_per_second)

    @property
    def header(self) -> tuple[bytes, bytes] | None:
        """What finds the header a request is keyed by (header_needles; None: by address)."""
        return header_needles(self.key[len("header:"):]) if self.key != "address" else None


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket as GCRA: `interval` ns per request, `tolerance` ns early allowed."""
    interval: int
    tolerance: int

    @classmethod
    def of(cls, rate: float, burst: int) -> Bucket:
        interval = max(1, round(NS / rate))
        size = burst or max(1, math.ceil(rate))
        return cls(interval, (size - 1) * interval)


def take(tat: int, now: int, bucket: Bucket) -> tuple[int, int]:
    """One request at `now` against a client whose theoretical arrival time is `tat` (0 for a
    new client): (the new TAT, 0) when allowed, (`tat` unchanged, ns to wait) when not."""
    if tat < now:
        tat = now
    early = tat - now - bucket.tolerance
    if early > 0:
        return tat, early
    return tat + bucket.interval, 0


def retry_after(wait_ns: int) -> int:
    """Retry-After seconds for a wait: whole seconds, rounded up, at least 1."""
    return max(1, -(-wait_ns // NS))


def is_exempt(ip: IPAddress, exempt: tuple[IPNetwork, ...]) -> bool:
    return any(ip.version == net.version and ip in net for net in exempt)


def header_needles(name: str) -> tuple[bytes, bytes]:
    """What header_value looks for: the field as written in the config, then lower-case."""
    return b"\r\n" + name.encode() + b":", b"\r\n" + name.lower().encode() + b":"


def header_value(head: bytes, needles: tuple[bytes, bytes]) -> bytes | None:
    """The value of the first field `needles` (header_needles) names in a request head,
    trimmed; None when absent or empty. Used on both HTTP paths, so both key a request
    alike. The field as configured is found without lower-casing the head (the usual case)."""
    exact, lower = needles
    at = head.find(exact)
    if at < 0:
        at = head.lower().find(lower)
        if at < 0:
            return None
    start = at + len(exact)
    end = head.find(b"\r\n", start)
    value = head[start:end if end >= 0 else len(head)].strip(b" \t")
    return value or None


def describe(settings: LimitSettings) -> str:
    """The [limits] line of `hbfork check`."""
    if not settings.enabled:
        return "off"
    parts = []
    if settings.connections_per_client:
        parts.append(f"{settings.connections_per_client} connections per client")
    if settings.requests_per_second:
        size = settings.burst or max(1, math.ceil(settings.requests_per_second))
        parts.append(f"{settings.requests_per_second:g} requests/s (burst {size}) by "
                     + (settings.key[len("header:"):] if settings.header else "address"))
    exempt = f"; exempt {', '.join(map(str, settings.exempt))}" if settings.exempt else ""
    return f"{', '.join(parts)}{exempt}; table {table_slots(settings.slots)} slots, all workers"


def table_slots(slots: int) -> int:
    """The slots a table of at least `slots` has: whole buckets."""
    return -(-slots // BUCKET) * BUCKET
