"""Where a worker's CPU goes, by category: the function-to-category map of scripts/profile-http
and the two ways of applying it (a cProfile stats file, py-spy's raw collapsed stacks).

The rule is the same for both: time spent in a function belongs to that function's category if
the map names it, else to the category of whoever called it (so `socket.send` called from
`ClientConnection.flush` is client write, from `MemberLeg.flush` upstream write (by file:
client.py, member.py); http11's helpers shared
by the request and the response parser go to whichever parser called them). In cProfile's
data a function called from several places is split in proportion to the time each caller
spent in it; in py-spy's samples each stack is walked from its innermost frame outwards to the
first function the map names.
"""

from __future__ import annotations

import cProfile
import pstats
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OTHER = "other (unmapped)"

# category -> {module file name: functions}; the order is the table's.
CATEGORIES: dict[str, dict[str, tuple[str, ...]]] = {
    # The fast path (hbfork/proxy/http/fast.py) does each half of a common exchange in one
    # function: its own time (the recv and send calls included) is counted per half; the lean
    # parsers, the pick and the accounting it calls keep their own categories.
    "fast path: request (recv, route, send to the member)": {
        "fast.py": ("on_client", "_request", "_hand_over_request"),
        "lean.py": ("replace_host",),
        "http_heads.py": ("lean_request_for_member",),
    },
    "fast path: response (recv, send to the client)": {
        "fast.py": ("on_member", "_response", "_hand_over_response"),
        "lean.py": ("without_hop_fields", "_cut_line"),
        "http_heads.py": ("lean_response_for_client",),
    },
    "lean parse (request and response heads)": {
        "lean.py": ("lean_request", "lean_response", "field_value"),
    },
    "accept (accept, new session)": {
        "acceptor.py": ("start", "stop", "_on_readable", "on_readable", "_accept",
                        "_peer_ip", "connection_closed"),
        "worker.py": ("_open_session", "_count_accepted"),
        "session.py": ("__init__",),
        "client.py": ("__init__",),
        "member.py": ("__init__",),
        "response.py": ("__init__",),
    },
    "client read + parse": {
        "client.py": ("read", "_half_closed"),
        "session.py": ("parse_head",),
        "http11.py": ("parse_request_head", "_request_line"),
        "router.py": ("decide", "decide_for", "_route", "sticky_route", "_sticky_route"),
    },
    "pick (+ pool checkout)": {
        "session.py": ("dispatch", "_not_acquired"),
        "upstreams.py": ("acquire", "choose", "_load", "reserve", "in_flight", "_refresh",
                         "_build", "queue_ahead", "sticky"),
        "balancing.py": ("choose", "_corrected", "_reported", "_scan", "_p2c", "_draw"),
        "balancer.py": ("pick", "pick_excluding", "rebuild"),
        "keepalive.py": ("checkout", "_still_open"),
    },
    "upstream write (head rewrite + send)": {
        "member.py": ("attached", "flush", "forward_request_body", "relay_request_bytes"),
        "http_heads.py": ("request_head_for_member", "_forwarded"),
    },
    "upstream read + parse": {
        "member.py": ("_read", "closed"),
        "response.py": ("process", "_parse_head", "_start"),
        "http11.py": ("parse_response_head",),
    },
    "client write (head rewrite + send)": {
        "client.py": ("send_now", "flush"),
        "response.py": ("_forward_body", "relay_response_bytes"),
        "http_heads.py": ("response_head_for_client",),
    },
    "logging + accounting": {
        "worker.py": ("request_done", "count_bytes", "count_routed", "count_fast_path"),
        "queue.py": ("soon",),
        "response.py": ("account",),
        "member.py": ("done",),
        "upstreams.py": ("started", "finished", "observe_latency", "observe"),
        "exchange.py": ("log_fields",),
        "accesslog.py": ("log", "now", "format_line", "_quote", "flush", "tick"),
    },
    "exchange end (pool checkin, keep-alive reset)": {
        "response.py": ("finish",),
        "member.py": ("release",),
        "keepalive.py": ("checkin",),
        "session.py": ("new_exchange", "idle_deadline"),
        "exchange.py": ("__init__",),
    },
    "session dispatch (state machine glue)": {
        "session.py": ("advance", "_step"),
        "client.py": ("on_event", "wants_read"),
        "member.py": ("on_event", "wants_read"),
    },
    "loop (epoll_wait, timers, interest changes)": {
        "loop.py": ("run_once", "next_timeout", "_run_deadlines", "set_mask", "set_timer",
                    "cancel", "_compact", "timer", "add", "remove", "_contain"),
        "session.py": ("set_deadline", "on_deadline", "_update_interest"),
        "worker.py": ("run", "_housekeeping", "_finished", "_update_title", "_on_wakeup",
                      "_on_master_message"),
    },
    "connect / close": {
        "member.py": ("connect", "connect_failed", "_retry_fresh", "_may_retry_fresh"),
        "session.py": ("close", "drain"),
        "client.py": ("start_linger", "_linger"),
        "keepalive.py": ("discard", "close", "<lambda>"),
        "connect.py": ("start_connect",),
        "worker.py": ("connect", "session_closed"),
    },
}
ORDER = [*CATEGORIES, OTHER]
_BY_FUNCTION = {(file, name): category for category, files in CATEGORIES.items()
                for file, names in files.items() for name in names}
# Syscalls (and the heap) as cProfile sees them: builtin name fragment -> label.
COUNTED = {
    "'poll' of 'select.epoll'": "epoll_wait",
    "'modify' of 'select.epoll'": "epoll_ctl MOD",
    "'register' of 'select.epoll'": "epoll_ctl ADD",
    "'unregister' of 'select.epoll'": "epoll_ctl DEL",
    "'recv_into' of '_socket.socket'": "recv_into",
    "'recv' of '_socket.socket'": "recv (MSG_PEEK)",
    "'send' of '_socket.socket'": "send",
    "'accept' of '_socket.socket'": "accept",
    "_heapq.heappush": "heappush",
    "_heapq.heappop": "heappop",
    "time.monotonic": "time.monotonic()",
}


def category_of(file: str, name: str) -> str | None:
    """The category the map gives a function (file: a path or a file name)."""
    return _BY_FUNCTION.get((file.rsplit("/", 1)[-1], name.rsplit(".", 1)[-1]))


@dataclass
class ProfilerCost:
    """What cProfile adds to the tottime of a callee per call, and to its caller per call it
    makes (the hook's work outside the callee's two clock reads is the caller's time), for
    Python and builtin callees; in seconds, measured by calibrate()."""
    callee_py: float
    callee_c: float
    caller_py: float
    caller_c: float

    def callee(self, builtin: bool) -> float:
        return self.callee_c if builtin else self.callee_py


def _empty() -> None:
    pass


def _calls_py(n: int) -> None:
    for _ in range(n):
        _empty()


def _calls_c(n: int, value: bytes = b"Ab") -> None:
    for _ in range(n):
        value.lower()


def calibrate(timer: Callable[[], float], n: int = 200_000) -> ProfilerCost:
    """Profile n empty calls (Python, then builtin) and compare with the same loop unprofiled."""
    measured = []
    for loop, callee in ((_calls_py, "_empty"), (_calls_c, "lower")):
        start = timer()
        loop(n)
        bare = timer() - start
        profile = cProfile.Profile(timer)
        profile.enable()
        loop(n)
        profile.disable()
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        callee_tt = next(v[2] for k, v in stats.items() if callee in k[2])
        caller_tt = next(v[2] for k, v in stats.items() if k[2] == loop.__name__)
        measured.append((callee_tt / n, max(0.0, caller_tt - bare) / n))
    (callee_py, caller_py), (callee_c, caller_c) = measured
    return ProfilerCost(callee_py, callee_c, caller_py, caller_c)


def from_cprofile(path: Path, cost: ProfilerCost) -> dict[str, dict[str, float]]:
    """From a cProfile stats file: "seconds" (tottime), "calls" and "charged" (the profiler's
    own cost in that tottime, by `cost`) per category, and "counted" (calls per COUNTED
    label)."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    memo: dict[tuple, dict[str, float]] = {}

    def spread(func: tuple) -> dict[str, float]:
        """How the time spent in `func` divides over categories (fractions summing to 1)."""
        own = category_of(func[0], func[2])
        if own is not None:
            return {own: 1.0}
        if func in memo:
            return memo[func]
        memo[func] = {OTHER: 1.0}  # a recursion back to here: leave that part unmapped
        callers = stats[func][4] if func in stats else {}
        weights = {caller: edge[3] for caller, edge in callers.items()}
        total = sum(weights.values())
        out: dict[str, float] = defaultdict(float)
        if total <= 0:
            out[OTHER] = 1.0
        else:
            for caller, weight in weights.items():
                for category, share in spread(caller).items():
                    out[category] += share * weight / total
        memo[func] = dict(out)
        return memo[func]

    made_py: dict[tuple, int] = defaultdict(int)  # calls each function made, by callee kind
    made_c: dict[tuple, int] = defaultdict(int)
    for callee, (_, _, _, _, callers) in stats.items():
        made = made_c if callee[0] == "~" else made_py
        for caller, edge in callers.items():
            made[caller] += edge[1]
    result: dict[str, dict[str, float]] = {
        key: defaultdict(float) for key in ("seconds", "calls", "charged", "counted")}
    for func, (_, ncalls, tottime, _, _) in stats.items():
        for category, share in spread(func).items():
            result["seconds"][category] += tottime * share
            result["calls"][category] += ncalls * share
            result["charged"][category] += share * (
                cost.callee(func[0] == "~") * ncalls
                + cost.caller_py * made_py[func] + cost.caller_c * made_c[func])
        if func[0] == "~":
            for fragment, label in COUNTED.items():
                if fragment in func[2]:
                    result["counted"][label] += ncalls
    return {key: dict(value) for key, value in result.items()}


def corrected(seconds: dict[str, float], charged: dict[str, float]) -> dict[str, float]:
    """Seconds per category less cProfile's own cost in them."""
    return {category: max(0.0, seconds[category] - charged.get(category, 0.0))
            for category in seconds}


def from_pyspy(path: Path) -> dict[str, int]:
    """Samples per category from py-spy's raw output ("frame;frame;... COUNT" lines, the
    outermost frame first, each frame "name (file:line)")."""
    samples: dict[str, int] = defaultdict(int)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        category = OTHER
        for frame in reversed(stack.split(";")):
            name, _, where = frame.partition(" (")
            found = category_of(where.rsplit(":", 1)[0], name.strip())
            if found is not None:
                category = found
                break
        samples[category] += int(count)
    return dict(samples)
