"""The table's layout: word indexes, record formats and sizes, and member record coding.

Layout of the segment (little-endian; every offset is a multiple of 8, so each u64 is one
aligned store):

    header        HEADER_SIZE bytes: magic, layout version, capacities and record sizes, then
                  u64 words: pick generation, master pid, start times, config generation,
                  heartbeat result counters, and the stats seqlock
    weights       capacity x u64   weight (bits 0-31) | lbset (bits 32-47) | USABLE (bit 48)
                                   | DRAINED (bit 49) | EJECTED (bit 50: ejected or failing
                                   its active checks); weight 0 = not
                                   picked by its ready; an ejected member's word keeps its
                                   reported weight, for a pool with nothing else (panic)
    uids          capacity x u64   the member's uid; changes when a slot is reused
    loads         capacity x u64   capacity (bits 0-31) | this front's requests in flight to
                                   it when its last heartbeat arrived (bits 32-63)
    members       capacity x MEMBER_SIZE, each a seqlocked record (MEMBER_FORMAT)
    admin         ADMIN_SIZE x admin_capacity: per-pool operator states (pool name, member uid,
                  drained/disabled), seqlocked as a whole (W_ADMIN_SEQ, W_ADMIN_COUNT)
    workers       (worker_capacity + 1) x worker record; the extra last one holds the totals of
                  workers that have exited ("retired"), so counters never go backwards

A worker record: fixed words (WK_*), then per member MEMBER_COUNTERS words, then the counters
of its generation's pools (MAX_POOLS x POOL_COUNTERS) and routes (MAX_ROUTES x ROUTE_COUNTERS),
indexed by their place in that generation's config; the retired record keeps those of the
generation in WK_SCOPE_GENERATION only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from hbfork.core.addresses import IPAddress, normalize_ip
from hbfork.core.hcheck import Summary
from hbfork.core.members import (
    CHECK_FAILED,
    DISABLED,
    DRAINED,
    EJECTED,
    ELIGIBLE,
    GRACE,
    IN_ERROR,
    NEVER_SEEN,
    READY_ZERO,
    STALE,
    Member,
)

MAGIC = b"HBFORK\x00\x01"
LAYOUT_VERSION = 5
HEADER_SIZE = 1024
NAME_PREFIX = "hbfork-"

# Header u64 word indexes (byte offset = index * 8).
W_GENERATION = 6
W_MASTER_PID = 7
W_STARTED_US = 8        # wall clock, µs since the epoch
W_STARTED_NS = 9        # time.monotonic_ns() at start: one clock for every process on the host
W_CONFIG_GENERATION = 10
W_CONFIG_LOADED_US = 11
W_STATS_SEQ = 12        # seqlock over "fold an exited worker into the retired record"
W_ADMIN_SEQ = 13        # seqlock over the admin region
W_ADMIN_COUNT = 14      # admin entries in use
W_ADMIN_CAPACITY = 15
W_LAST_HEARTBEAT_NS = 16  # monotonic ns of the last accepted heartbeat (0 = none yet)
W_FRONT_DRAINING_NS = 17  # monotonic ns `ctl drain-front` began (0 = not draining)
W_CODE_LOADED_US = 18   # wall clock, µs: when the master process loaded its code (upgrades)
VERSION_AT, VERSION_SIZE = 960, 32  # header bytes: the master's hbfork version, NUL-padded
W_HEARTBEAT_COUNTERS = 32
HEARTBEAT_RESULTS = (
    "accepted", "malformed", "bad_number", "bad_port", "bad_signature", "unsigned", "stale",
    "replay", "not_allowed", "rate_limited", "unknown_source", "unknown_port", "table_full",
    "internal_error", "truncated",
)

# ... then the active check summary (hbfork.core.hcheck.Summary): state, result, passes,
# fails, status and when, before the name.
MEMBER_FORMAT = struct.Struct("<Q16sBBHHHiiIHHQQQQQQQBBHHHQ48s")
MEMBER_SIZE = 8 + ((MEMBER_FORMAT.size + 7) // 8) * 8
REASONS = (NEVER_SEEN, ELIGIBLE, STALE, READY_ZERO, IN_ERROR, DRAINED, DISABLED, GRACE, EJECTED,
           CHECK_FAILED)  # append only: the index is what the table stores
FLAG_STATIC, FLAG_DRAINED, FLAG_DISABLED = 1, 2, 4

# Worker record u64 word indexes.
WK_PID, WK_NUMBER, WK_GENERATION, WK_STATE, WK_TICK_NS, WK_STARTED_US = range(6)
WK_CONNECTIONS, WK_ACCEPTED, WK_REQUESTS = 6, 7, 8
WK_STATUS_CLASS = 9     # 9..13: responses 1xx..5xx sent to clients
WK_BYTES_IN, WK_BYTES_OUT = 14, 15
WK_CONNECT_FAILURES, WK_NO_MEMBER, WK_RETRIES, WK_UPSTREAM_TIMEOUTS = 16, 17, 18, 19
WK_CLIENT_ERRORS = 20   # malformed requests answered 4xx by the proxy itself
WK_TLS = 22             # 22..29: TLS handshakes by result (TLS_RESULTS)
TLS_RESULTS = ("ok", "resumed", "timeout", "protocol_version", "plain_http", "closed",
               "no_shared_cipher", "other")
WK_FAST_PATH = 30       # requests served end to end by the HTTP fast path
WK_HISTOGRAM = 32       # LATENCY_BUCKETS counts, then +Inf, then sum (µs) and count
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)
WK_LATENCY_SUM = WK_HISTOGRAM + len(LATENCY_BUCKETS) + 1
WK_LATENCY_COUNT = WK_LATENCY_SUM + 1
WK_QUEUE_HISTOGRAM = 64  # time requests waited in the front queue: same buckets, sum, count
WK_QUEUE_SUM = WK_QUEUE_HISTOGRAM + len(LATENCY_BUCKETS) + 1
WK_QUEUE_COUNT = WK_QUEUE_SUM + 1
WK_LIMITED_REQUESTS = 82    # requests answered 429 by [limits] requests_per_second
WK_LIMITED_CONNECTIONS = 83  # connections refused by [limits] connections_per_client
WK_LIMIT_EVICTIONS = 84     # clients the per-client limit table evicted to make room
WK_PROXY = 88           # 88..93: PROXY protocol headers received, by result (PROXY_RESULTS)
PROXY_RESULTS = ("ok", "local", "malformed", "untrusted", "timeout", "closed")
WK_SLOW = 50            # 50..52: slow-client cut-offs by kind (hbfork.core.slow_clients)
SLOW_KINDS = ("slow_head", "slow_body", "slow_reader")  # = slow_clients.SLOW_KINDS
WK_MEMBERS = 96         # then capacity x MEMBER_COUNTERS words
MEMBER_COUNTERS = 8
MC_UID, MC_INFLIGHT, MC_STATUS_CLASS, MC_CONNECT_FAILURES = 0, 1, 2, 7  # 2..6: 1xx..5xx
WK_SCOPE_GENERATION = 21  # the generation whose pool and route counters a record holds
MAX_POOLS = 64
POOL_COUNTERS = 16
PC_STATUS_CLASS, PC_NO_MEMBER, PC_STICKY, PC_STICKY_LOST = 0, 5, 6, 7  # 0..4: 1xx..5xx
STICKY_HIT = 1           # a request's sticky outcome (hbfork.proxy.http.state's, the same)
PC_QUEUED = 8            # waiting now (a gauge: the worker's own queue)
PC_QUEUE_TIMEOUT, PC_QUEUE_FULL, PC_QUEUE_GONE = 9, 10, 11  # 503s, and clients that left
PC_DEQUEUED = 12         # requests that waited, then went to a member
PC_QUEUE_HEAD = 13       # a gauge: the rank of the worker's first waiter any member may take
                         # (its arrival plus its offset: hbfork.core.queue_order; CLOCK_MONOTONIC
                         # µs + 1; 0: none), for rank order across workers
PC_QUEUE_HANDOFFS = 14   # rooms this worker made and left to another worker's older waiter
                         # (that worker woken through its eventfd)
MAX_ROUTES = 1024
ROUTE_COUNTERS = 2
RC_REQUESTS, RC_ERRORS = 0, 1  # errors: 5xx answers
ADMIN_FORMAT = struct.Struct("<32sQQ")  # pool name, member uid, flags
ADMIN_SIZE = ADMIN_FORMAT.size
ADMIN_DRAINED, ADMIN_DISABLED = 1, 2
STATE_FREE, STATE_BOOTING, STATE_READY, STATE_DRAINING, STATE_EXITED = range(5)
WORKER_STATES = ("free", "booting", "ready", "draining", "exited")
WORKER_TOTALS = (WK_ACCEPTED, WK_REQUESTS, *range(WK_STATUS_CLASS, WK_STATUS_CLASS + 5),
                 WK_BYTES_IN, WK_BYTES_OUT, WK_CONNECT_FAILURES, WK_NO_MEMBER, WK_RETRIES,
                 WK_UPSTREAM_TIMEOUTS, WK_CLIENT_ERRORS, WK_FAST_PATH,
                 WK_LIMITED_REQUESTS, WK_LIMITED_CONNECTIONS, WK_LIMIT_EVICTIONS,
                 *range(WK_SLOW, WK_SLOW + len(SLOW_KINDS)),
                 *range(WK_TLS, WK_TLS + len(TLS_RESULTS)),
                 *range(WK_PROXY, WK_PROXY + len(PROXY_RESULTS)),
                 *range(WK_HISTOGRAM, WK_LATENCY_COUNT + 1),
                 *range(WK_QUEUE_HISTOGRAM, WK_QUEUE_COUNT + 1))
LOAD_MASK = 0xFFFFFFFF


def segment_name(master_pid: int) -> str:
    return f"{NAME_PREFIX}{master_pid}"


def worker_words(capacity: int) -> int:
    """The size of one worker record, in u64 words."""
    return members_end(capacity) + MAX_POOLS * POOL_COUNTERS + MAX_ROUTES * ROUTE_COUNTERS


def members_end(capacity: int) -> int:
    return WK_MEMBERS + capacity * MEMBER_COUNTERS


def pool_counters_at(capacity: int, pool: int) -> int:
    return members_end(capacity) + pool * POOL_COUNTERS


def route_counters_at(capacity: int, route: int) -> int:
    return members_end(capacity) + MAX_POOLS * POOL_COUNTERS + route * ROUTE_COUNTERS


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A member as a reader sees it."""
    slot: int
    uid: int
    ip: IPAddress
    port: int
    static: bool
    drained: bool
    disabled: bool
    lbset: int
    reason: str
    ready: int
    busy: int
    weight: int
    first_seen: int
    last_seen: int
    error_until: int
    heartbeats: int
    errors: int
    name: str
    ejected_until: int = 0
    ejections: int = 0       # recent ejections (the next one lasts longer)
    eject_cause: int = 0     # hbfork.core.outlier.CAUSES index
    ejected_total: int = 0
    check: Summary = Summary()  # its active checks (state CHECK_NONE: none configured)

    @property
    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.ip.version == 6 else f"{self.ip}:{self.port}"

    @property
    def label(self) -> str:
        return self.name or self.address


def encode_member(m: Member) -> bytes:
    """A member's record bytes (MEMBER_FORMAT), as the master publishes it."""
    flags = (FLAG_STATIC if m.static else 0) | (FLAG_DRAINED if m.drained else 0) \
        | (FLAG_DISABLED if m.disabled else 0)
    packed = m.ip.packed
    return MEMBER_FORMAT.pack(
        m.uid, packed.ljust(16, b"\0"), m.ip.version, flags, m.port, m.lbset,
        REASONS.index(m.reason), m.ready, m.busy, m.weight, min(m.ejections, 0xFFFF),
        m.eject_cause, m.first_seen, m.last_seen, m.error_until, m.ejected_until,
        m.heartbeats, m.errors, m.ejected_total, m.check.state, m.check.result,
        m.check.passes, m.check.fails, m.check.status, m.check.at, m.name.encode()[:48])


def decode_member(slot: int, raw: bytes) -> MemberRecord | None:
    """The record bytes of one slot as a MemberRecord (None: the slot is free)."""
    (uid, packed, version, flags, port, lbset, reason, ready, busy, weight, ejections, cause,
     first_seen, last_seen, error_until, ejected_until, heartbeats, errors, ejected_total,
     *check, name) = MEMBER_FORMAT.unpack(raw)
    if not uid:
        return None
    ip = IPv4Address(packed[:4]) if version == 4 else IPv6Address(packed)
    return MemberRecord(
        slot=slot, uid=uid, ip=normalize_ip(ip), port=port, static=bool(flags & FLAG_STATIC),
        drained=bool(flags & FLAG_DRAINED), disabled=bool(flags & FLAG_DISABLED), lbset=lbset,
        reason=REASONS[reason] if reason < len(REASONS) else "?", ready=ready, busy=busy,
        weight=weight, first_seen=first_seen, last_seen=last_seen, error_until=error_until,
        heartbeats=heartbeats, errors=errors, name=name.rstrip(b"\0").decode(errors="replace"),
        ejected_until=ejected_until, ejections=ejections, eject_cause=cause,
        ejected_total=ejected_total, check=_summary(*check))


def _summary(state: int, result: int, passes: int, fails: int, status: int, at: int) -> Summary:
    return Summary(state, passes, fails, result, status, at)
