"""What the no-answer watch (hbfork.proxy.no_answer) asks of an HTTP session: is it waiting
for the first byte of a member's answer, and, when that member has gone silent, hand the
request on as a response timeout would (hbfork.core.retry's rules).
"""

from __future__ import annotations

from hbfork.core.retry import TIMEOUT
from hbfork.proxy.http.session import HttpSession
from hbfork.proxy.http.state import FORWARD
from hbfork.proxy.targets import Target

SILENT = "the member answered nothing while the rest of its pool answered"


def waiting(session: object) -> tuple[Target, float] | None:
    """(member, when the request went to it) if `session` has sent a whole request without a
    body and has read nothing of the answer; else None. A request with a body is left out: its
    upload may still be under way, so its wait says nothing about the member."""
    if type(session) is not HttpSession:
        return None
    member = session.member
    target = member.inflight
    if target is None or session.state != FORWARD or member.conn is None:
        return None
    ex = session.ex
    request = ex.request
    if ex.response is not None or member.inbuf or member.out or request is None or \
            request.has_body or not ex.member_started:
        return None
    return target, ex.member_started


def give_up(session: object) -> bool:
    """The member of a waiting request went silent: the request goes to another member when
    a response timeout would send it there (idempotent, no body, nothing sent to the client,
    tries left, "timeout" in the pool's retry_on); True if it did. Otherwise it keeps waiting
    for its answer or its response_timeout (a non-idempotent request may still be
    answered)."""
    if type(session) is not HttpSession or session.closed:
        return False
    member = session.member
    if not member.may_retry_elsewhere(TIMEOUT):
        return False
    member.gateway_failure(TIMEOUT, SILENT)
    if not session.closed:
        session.advance()
    return True
