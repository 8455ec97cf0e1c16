"""ajp:// members (mod_proxy_ajp) -> an AJP pool's keys [pure].

A balancer whose members are ajp:// becomes a pool with `protocol = "ajp"`. Apache's secret=,
ping= and iobuffersize= are member parameters; hbfork has one value per pool (ajp_secret,
ajp_ping, ajp_packet_size), carried over when every member agrees, noted otherwise. The
server's ProxyIOBufferSize is the packet size when no member sets iobuffersize= (mod_proxy_ajp
uses the buffer size as its AJP packet size, from 8192 up to 65536).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hbfork.apache.conf import Directive, Note, parse_duration
from hbfork.apache.members import Member
from hbfork.core.ajp import DEFAULT_PACKET_SIZE, MAX_PACKET_SIZE

MAX_PING = 60.0  # hbfork's limit on ajp_ping


class AjpKeys:
    """The pool keys (key, value, comment) and comments the members make."""

    def __init__(self, members: Sequence[Member]) -> None:
        self.members = members
        self.settings: list[tuple[str, Any, str]] = []
        self.comments: list[str] = []

    def set(self, key: str, value: Any, comment: str) -> None:
        self.settings.append((key, value, comment))


def ajp_keys(members: Sequence[Member], io_buffer: Directive | None,
             notes: list[Note]) -> AjpKeys:
    """The AJP keys of a pool of `members` (none unless they are ajp:// ones); `io_buffer`:
    the server's ProxyIOBufferSize."""
    plan = AjpKeys(members)
    if not members or not members[0].ajp:
        return plan
    first = members[0].source
    plan.set("protocol", "ajp", "ajp:// members (mod_proxy_ajp): hbfork speaks AJP/1.3 to them")
    plan.comments.append("AJP members are checked with hcmethod \"tcp\" at most, and get no "
                         "X-Forwarded-* headers (the client's address travels in AJP itself)")
    secret = _agreed(plan, "secret", notes)
    if secret:
        plan.set("ajp_secret", secret, "BalancerMember secret= (Tomcat's secret on its AJP "
                                       "connector)")
    ping = _agreed(plan, "ping", notes)
    if ping:
        _ping(plan, ping, first, notes)
    size = _agreed(plan, "iobuffersize", notes)
    said = "BalancerMember iobuffersize="
    if not size and io_buffer is not None and io_buffer.args:
        size, said = io_buffer.args[0], f"{io_buffer.text} ({io_buffer.where}):"
    if size:
        _packet_size(plan, size, said, first, notes)
    return plan


def _agreed(plan: AjpKeys, key: str, notes: list[Note]) -> str:
    values = [m.ajp_params.get(key, "") for m in plan.members]
    if len(set(values)) > 1:
        shown = "/".join(v or "unset" for v in values)
        notes.append(Note.of(plan.members[0].source, "the members disagree and hbfork has one "
                                                     "value per pool: left unset",
                             f"{key}={'*' * 3 if key == 'secret' else shown}"))
        return ""
    return values[0]


def _ping(plan: AjpKeys, value: str, d: Directive, notes: list[Note]) -> None:
    seconds = parse_duration(value)
    if seconds is None or seconds < 0:
        notes.append(Note.of(d, "not a duration", f"ping={value}"))
    elif seconds:
        plan.set("ajp_ping", min(seconds, MAX_PING),
                 f"BalancerMember ping={value}: CPING before a pooled connection is reused"
                 + (f" (hbfork's limit is {MAX_PING:g})" if seconds > MAX_PING else ""))


def _packet_size(plan: AjpKeys, value: str, said: str, d: Directive,
                 notes: list[Note]) -> None:
    if not value.isdigit():
        notes.append(Note.of(d, "not a number", f"iobuffersize={value}"))
        return
    size = max(DEFAULT_PACKET_SIZE, min(int(value), MAX_PACKET_SIZE))
    if size != DEFAULT_PACKET_SIZE:
        plan.set("ajp_packet_size", size, f"{said} {value} as the AJP packet size (Tomcat's "
                                          "packetSize must match)")
