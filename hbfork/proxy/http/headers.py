"""Header rules and request IDs on an HTTP session's heads (hbfork.core.header_plan,
hbfork.core.request_id): the small hooks both paths call, kept here so the session's modules
only call them. One EdgeHeaders per worker (on its Router)."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Protocol

from hbfork.core.config import Config
from hbfork.core.header_plan import HeaderPlans, HeaderProgram
from hbfork.core.http11 import RequestHead, ResponseHead
from hbfork.core.http_heads import HeaderMap
from hbfork.core.lean import field_value
from hbfork.core.request_id import RequestIds
from hbfork.core.routes import Route

# What is read of a Decision and an Exchange (hbfork.proxy.http.router, .exchange: both import
# the router, which makes the EdgeHeaders, so they are described here, not imported).


class _Pool(Protocol):
    @property
    def name(self) -> str: ...


class Decision(Protocol):
    @property
    def route(self) -> Route | None: ...
    @property
    def pool(self) -> _Pool | None: ...


class Exchange(Protocol):
    request_id: bytes
    headers: HeaderProgram | None

    @property
    def decision(self) -> Decision | None: ...
    @property
    def request(self) -> RequestHead | None: ...
    @property
    def lean_head(self) -> bytes | None: ...


CRLF = b"\r\n"


class EdgeHeaders:
    """A worker's header programs and request IDs. `active` False: no rule anywhere and IDs
    off, so the paths skip all of this."""

    __slots__ = ("active", "ids", "plans")

    def __init__(self, config: Config) -> None:
        # The prefix is drawn in the worker (Routers are made there): one per worker.
        self.ids = RequestIds(config.request_id, os.urandom(6).hex().encode())
        self.plans = HeaderPlans(config, self.ids.lower)
        self.active = self.plans.active

    def program(self, listen: object, decision: Decision | None) -> HeaderProgram:
        if decision is None:
            return self.plans.program(listen, None, "")
        pool = decision.pool
        return self.plans.program(listen, decision.route, pool.name if pool is not None else "")

    def id_line(self, ex: Exchange, offered: bytes, ip: str) -> bytes:
        """The ID field line (with its CRLF) of `ex`'s request, deciding its ID if it has none
        yet; b"" when IDs are off."""
        ids = self.ids
        if not ids.lower:
            return b""
        if not ex.request_id:
            ex.request_id = ids.decide(offered, ip)
        return ids.line_start + ex.request_id + CRLF

    def response_line(self, ex: Exchange) -> bytes:
        """The ID line a response carries (b"": none)."""
        if not self.ids.response or not ex.request_id:
            return b""
        return self.ids.line_start + ex.request_id + CRLF

    def client_head(self, ex: Exchange, head: bytes, keep_alive: bool, extra: bytes
                    ) -> bytes | None:
        """The fast path's response head for the client (lean_response_for_client() with the
        rules and the ID), or None when `ex` has neither: then the head may go as it came."""
        program, line = ex.headers, self.response_line(ex)
        if program is None or not (program.rewrites_response or line):
            return None
        return program.client_head(head) + extra + line + (
            CRLF if keep_alive else b"Connection: close\r\n\r\n")

    # --- the general path

    def request_for_member(self, ex: Exchange, listen: object, request: RequestHead,
                           ip: str) -> RequestHead:
        """`request` as the rules make it, with its ID field last (where the fast path puts
        it: before hbfork's X-Forwarded-*)."""
        program = ex.headers = ex.headers or self.program(listen, ex.decision)
        fields, offered = program.request_fields(request.headers)
        if self.id_line(ex, offered, ip):
            fields.append((self.ids.name, self.ids.lower, ex.request_id))
        return replace(request, headers=fields)

    def response_for_client(self, ex: Exchange, listen: object, response: ResponseHead,
                            rewrite: HeaderMap | None) -> ResponseHead:
        """`response` with ProxyPassReverse's `rewrite` and then the rules applied."""
        program = ex.headers = ex.headers or self.program(listen, ex.decision)
        if not program.rewrites_response:
            return response
        fields = response.headers
        if rewrite is not None:
            fields = [(name, lower, rewrite(lower, value)) for name, lower, value in fields]
        return replace(response, headers=program.response_fields(fields))

    def own_answer(self, ex: Exchange, listen: object, answer: bytes, ip: str) -> bytes:
        """One of hbfork's own answers to `ex` after the `always` rules, with the ID."""
        program = ex.headers or self.program(listen, ex.decision)
        answer = program.own_answer(answer)
        if self.ids.response and ex.request is not None:
            if not ex.request_id:
                self.id_line(ex, self._offered(ex), ip)
            end = answer.find(b"\r\n\r\n") + 2
            answer = answer[:end] + self.response_line(ex) + answer[end:]
        return answer

    def _offered(self, ex: Exchange) -> bytes:
        lower = self.ids.lower
        if ex.lean_head is not None:
            return field_value(ex.lean_head, lower)
        assert ex.request is not None
        return next((value for _, name, value in ex.request.headers if name == lower), b"")
