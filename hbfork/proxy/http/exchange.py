"""One HTTP request and its response, as a session serves it: a fresh Exchange per request
(the session's `ex`), so nothing of one request can leak into the next. It is also what the
worker accounts and logs when the request ends (hbfork.proxy.context.Exchange)."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from hbfork.core.chunked import ChunkedBody
from hbfork.core.header_plan import HeaderProgram
from hbfork.core.http11 import LengthBody, RequestHead, ResponseHead, UntilClose
from hbfork.core.lean import field_value
from hbfork.core.slow_clients import BodyProbe
from hbfork.proxy.http.router import Decision
from hbfork.proxy.http.spool_file import Lag, SpoolFile
from hbfork.proxy.upstreams import Target

NOT_TRIED: AbstractSet[int] = frozenset()


@dataclass(slots=True, eq=False, init=False)
class Exchange:
    client_ip: str
    request: RequestHead | None = None
    lean_head: bytes | None = None  # the head as received, while `request` is a lean parse
    decision: Decision | None = None  # where the router sends it
    body: LengthBody | ChunkedBody | None = None  # the request body's framing
    request_done: bool = False      # the whole request body was read
    keep_alive: bool = False        # the client connection carries on after it
    target: Target | None = None    # the member it went to last
    tried: AbstractSet[int] = frozenset()  # the slots it went to (a new set per try)
    fresh_retry: bool = False       # it is being sent again on a fresh connection
    last_failure: tuple[int, str] | None = None  # the answer owed if no other member takes it
    sticky_route: str | None = None  # the route its session names (a sticky pool's)
    sticky_outcome: int = 0         # 0, STICKY_HIT or STICKY_LOST
    set_cookie: bytes | None = None  # a sticky-session cookie for the response
    response: ResponseHead | None = None
    response_body: LengthBody | ChunkedBody | UntilClose | None = None
    sent_to_client: bool = False    # the response head (ours or the member's) went out
    status: int = 0
    bytes_to_client: int = 0
    exchange_started: float = 0.0   # time.monotonic() when its head was read
    member_started: float = 0.0     # the loop's clock when it went to the member that answered
    accounted: bool = False         # request_done() was reported for it
    request_id: bytes = b""         # its ID ([request_id]; b"": none yet, or off)
    headers: HeaderProgram | None = None  # the header rules it meets (None: none anywhere)
    lean_response: bytes | None = None  # a fast-path response's head (its fields unparsed)

    def __init__(self, client_ip: str, **fields: Any) -> None:
        # Written out (not the dataclass's __init__, which takes every field as an argument
        # with its default): one is made per request. Keep it in step with the fields.
        self.client_ip = client_ip
        self.request = None
        self.lean_head = None
        self.decision = None
        self.body = None
        self.request_done = False
        self.keep_alive = False
        self.target = None
        self.tried = NOT_TRIED
        self.fresh_retry = False
        self.last_failure = None
        self.sticky_route = None
        self.sticky_outcome = 0
        self.set_cookie = None
        self.response = None
        self.response_body = None
        self.sent_to_client = False
        self.status = 0
        self.bytes_to_client = 0
        self.exchange_started = 0.0
        self.member_started = 0.0
        self.accounted = False
        self.request_id = b""
        self.headers = None
        self.lean_response = None
        self.body_started = 0.0
        self.send_window = 0.0
        self.sent_mark = 0
        self.probe = None
        self.outcome = ""
        self.spool = None
        self.lag = None
        self.send_credit = 0
        if fields:  # tests set some at once
            for name, value in fields.items():
                setattr(self, name, value)

    @property
    def log_client(self) -> str:
        """The client address the access log names: the connection's peer (the one place to
        point at the real client once trusted proxies say who it is)."""
        return self.client_ip
    # slow clients (hbfork.proxy.http.slow): when its body began to move, the
    # window in which its reader is judged,
    # the look-ahead of a body being buffered, and how it ended when not plainly ("slow_body",
    # "slow_reader", ...: hbfork.core.slow_clients, for the access log)
    body_started: float = 0.0
    send_window: float = 0.0        # when the client's current window of being behind began
    sent_mark: int = 0              # the response bytes it had taken then
    probe: BodyProbe | None = None
    outcome: str = ""
    spool: SpoolFile | None = None  # the response's rest, for a slow reader (http.spool)
    lag: Lag | None = None          # since when its client lags (made when it is first behind)
    send_credit: int = 0            # what its client's socket surely still takes (slow.read_size)

    def log_fields(self, status: int, target: Target | None, now: float) -> dict[str, object]:
        """What the access log records of the request that just ended."""
        request = self.request
        referer = agent = b""
        line = "-"
        if request is not None:
            line = f"{request.method.decode()} {request.target.decode('latin-1')} HTTP/" \
                   f"{'1.1' if request.version == 11 else '1.0'}"
            if self.lean_head is not None:  # its fields were not parsed
                referer = field_value(self.lean_head, b"referer")
                agent = field_value(self.lean_head, b"user-agent")
            for _, lower, value in request.headers:
                if lower == b"referer":
                    referer = value
                elif lower == b"user-agent":
                    agent = value
        member_started = self.member_started
        return {
            "client": self.log_client,
            "request": line,
            "status": status,
            "bytes": self.bytes_to_client,
            "referer": referer.decode("latin-1"),
            "user_agent": agent.decode("latin-1"),
            "member": target.address if target else "",
            "upstream_seconds": (now - member_started) if member_started and target else None,
            "total_seconds": now - (self.exchange_started or now),
            "request_id": self.request_id.decode("latin-1"),
        }
