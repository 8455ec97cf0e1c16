"""What the fast path needs to know of one routing decision on one listener, worked out once.

Per request the fast path would otherwise ask the same questions of the same objects: may this
pool take the fast path at all (a pool, its `fast` flag, no TLS to members), is it sticky,
which header program applies (a (listener, route, pool) key built and looked up), does that
program rewrite the request or the response, is the request ID echoed, what does the member's
request-target and Host become, which statuses may be retried, how long may the member take.
The answers depend only on the worker's config and the Decision (the router shares one
Decision among all requests with the same Host and target), so they are computed on a
session's first request with that Decision (or taken from the worker's table of plans) and
reused: per request the fast path compares one object's identity.
"""

from __future__ import annotations

from typing import Protocol

from hbfork.core.header_plan import HeaderProgram
from hbfork.core.http11 import ResponseHead
from hbfork.core.request_id import RequestIds
from hbfork.core.routes import Route
from hbfork.proxy.http.headers import EdgeHeaders
from hbfork.proxy.upstreams import PoolView


class Decision(Protocol):
    """What is read of a hbfork.proxy.http.router.Decision (the router makes the worker's
    FastPlans, so it is described here, not imported)."""

    @property
    def pool(self) -> PoolView | None: ...
    @property
    def target(self) -> bytes: ...
    @property
    def route(self) -> Route | None: ...
    @property
    def preserve_host(self) -> bool: ...
    @property
    def reverse(self) -> object | None: ...
    @property
    def fast(self) -> bool: ...


PLANS_MAX = 8192  # (listener, Decision) plans a worker remembers (DECISION_CACHE's size)


class FastPlan:
    """The fast path's view of one (listener, Decision) whose pool it may serve."""

    __slots__ = ("echo", "fail_statuses", "id_start", "ids", "last_client", "last_head",
                 "last_lean", "mapped", "member_target", "plain", "pool", "preserve_host",
                 "program", "response_timeout", "retry_statuses", "rewrites_request",
                 "rewrites_response", "sticky")

    def __init__(self, decision: Decision, pool: PoolView, program: HeaderProgram | None,
                 ids: RequestIds) -> None:
        self.pool = pool
        self.sticky = pool.sticky
        self.member_target = decision.target        # b"": the target as it came
        self.preserve_host = decision.preserve_host
        # The head needs no change but hbfork's X-Forwarded-* (when on) and its final CRLF.
        self.plain = not decision.target and decision.preserve_host
        self.mapped = decision.reverse is not None  # ProxyPassReverse: lean parse knows
        self.response_timeout = pool.response_timeout
        self.retry_statuses = pool.retry_statuses
        self.fail_statuses = pool.fail_statuses
        self.program = program                      # None: no rules anywhere, IDs off
        self.rewrites_request = program is not None and program.rewrites_request
        # The worker's request IDs (None: off); echo: the ID goes back in the response too.
        self.ids = ids if program is not None and ids.lower else None
        echo_ids = ids.response
        self.echo = program is not None and echo_ids
        self.id_start = ids.line_start                # its field line but value and CRLF
        # The client's response head must be rebuilt (rules, or the ID line to add).
        self.rewrites_response = program is not None and (program.rewrites_response
                                                           or echo_ids)
        # The last response head its members sent (every session's: they repeat for a
        # second, until Date changes), its lean parse and the client head its rules make of
        # it (None: not made yet). Pure functions of the head, kept once per plan.
        self.last_head = b""
        self.last_lean: tuple[ResponseHead, bool] | None = None
        self.last_client: bytes | None = None

    def client_head(self, head: bytes) -> bytes:
        """The rules' client head for `head`, the last head (HeaderProgram.client_head)."""
        assert self.program is not None
        self.last_client = found = self.program.client_head(head)
        return found



class FastPlans:
    """A worker's plans, by listener and Decision. None: the decision is the general path's
    (no pool: the proxy answers; a pool that is not `fast`, or speaks TLS to its members)."""

    __slots__ = ("edge", "plans")

    def __init__(self, edge: EdgeHeaders) -> None:
        self.edge = edge
        # Keyed by the Decision's id (Decisions compare by value, slowly); the Decision is
        # kept beside its plan so that an id reused after the router dropped it never matches.
        self.plans: dict[tuple[object, int], tuple[Decision, FastPlan | None]] = {}

    def plan(self, listen: object, decision: Decision) -> FastPlan | None:
        key = (listen, id(decision))
        found = self.plans.get(key)
        if found is not None and found[0] is decision:
            return found[1]
        plan = self._make(listen, decision)
        if len(self.plans) >= PLANS_MAX:
            self.plans.clear()
        self.plans[key] = (decision, plan)
        return plan

    def _make(self, listen: object, decision: Decision) -> FastPlan | None:
        pool = decision.pool
        if pool is None or not decision.fast or pool.tls_context is not None:
            return None
        edge = self.edge
        program = edge.program(listen, decision) if edge.active else None
        return FastPlan(decision, pool, program, edge.ids)
