"""Passive outlier detection: a member whose heartbeat says it is idle but whose answers fail
is taken out of the picks. Pure: the caller passes `now` (monotonic seconds).

A heartbeat says a member's web server has idle workers; it does not say the application
behind it works. A member that answers every request 500 at once even looks *better* than
the healthy ones to a pick corrected by in-flight counts (it holds nothing in flight), so
without detection it takes more than its share. Every worker watches the outcomes of its own
requests (Detector) and, when one of the rules trips, asks the master to eject the member; the
master applies the ejection for the whole front through the table, within a cap on the share
of a pool that may be out at once (Envoy's model, and what HAProxy's `observe layer7` does):

    consecutive_5xx              N answers in a row with a status of the pool's failonstatus
    consecutive_gateway_failures N in a row without a usable answer: reset or closed before
                                 the response head, response timeout, malformed response
    failure_rate                 the share of failures of either kind over the last
                                 `failure_rate_window` seconds, once at least
                                 `failure_rate_min_requests` requests were seen; and over
                                 the most recent stretch of it that holds
                                 `failure_rate_recent_requests`, so a busy member that starts
                                 failing is judged on what it does now, not diluted by
                                 seconds of healthy history
    no_answer_after              a member that holds requests and finishes none for this
                                 long (or longer, see hbfork.core.hang) while the rest of
                                 its pool answers: out well before response_timeout

An ejection lasts `eject_time` times the number of recent ejections (capped at
`max_eject_time`; the count decays by one for every `eject_time` the member stays in), and
the member comes back through a ramp of `slow_start` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hbfork.core.values import boolean, integer, seconds, setting


def _share(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"expected a fraction from 0 to 1, got {value!r}")
    return float(value)


def _factor(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 1000:
        raise ValueError(f"expected a number from 1 to 1000, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class OutlierSettings:
    enabled: bool = setting(True, boolean,
                            "take members whose answers fail out of the picks (passive "
                            "outlier detection); false: only refused connects do, as in Apache")
    consecutive_5xx: int = setting(5, integer(0, 1_000_000),
                                   "answers in a row with a status of the pool's failonstatus "
                                   "that eject a member; 0 = off")
    consecutive_gateway_failures: int = setting(5, integer(0, 1_000_000),
                                                "requests in a row without a usable answer "
                                                "(reset, closed, timeout, malformed) that "
                                                "eject a member; 0 = off")
    failure_rate: float = setting(0.25, _share,
                                  "share of failed requests (either kind) over the window "
                                  "that ejects a member; 0 = off")
    failure_rate_window: float = setting(10.0, seconds(0.1, 3600),
                                         "seconds of outcomes failure_rate looks at")
    failure_rate_min_requests: int = setting(20, integer(1, 1_000_000),
                                             "requests a worker must have seen in the window "
                                             "before failure_rate judges")
    failure_rate_recent_requests: int = setting(100, integer(0, 1_000_000),
                                                "failure_rate also judges the most recent "
                                                "part of the window holding this many "
                                                "requests (a worker's; 0 = off)")
    eject_time: float = setting(30.0, seconds(0, 86400),
                                "seconds a first ejection lasts; each repeat adds as much")
    max_eject_time: float = setting(300.0, seconds(0, 86400),
                                    "the longest an ejection lasts")
    max_ejected_share: float = setting(0.5, _share,
                                       "most of a pool's members out by ejection at once (at "
                                       "least one may always be)")
    no_answer_after: float = setting(0.5, seconds(0, 3600, allow_zero=True),
                                     "seconds a member may hold requests without finishing "
                                     "any while the rest of its pool answers before it is "
                                     "ejected (at least no_answer_factor times its usual "
                                     "response time); 0 = off")
    no_answer_factor: float = setting(10.0, _factor,
                                      "how many times a member's usual response time (or "
                                      "its pool's median, if longer) a silence must last "
                                      "to count, when that is more than no_answer_after")
    no_answer_min_pending: int = setting(3, integer(1, 1_000_000),
                                         "requests the whole front must have in flight to "
                                         "a silent member before no_answer_after judges it")
    slow_start: float = setting(10.0, seconds(0, 3600, allow_zero=True),
                                "seconds over which an ejected member ramps back to its full "
                                "weight ([balance] slow_start if longer)")


# What one request told about its member.
OK, FAILED_STATUS, GATEWAY = 0, 1, 2
# Why a member was ejected, as the table stores it (index) and the status page shows it.
CAUSES = ("", "consecutive 5xx", "consecutive gateway failures", "failure rate",
          "active check", "no answer while its pool answers")
CAUSE_5XX, CAUSE_GATEWAY, CAUSE_RATE, CAUSE_CHECK, CAUSE_NO_ANSWER = 1, 2, 3, 4, 5
BUCKETS = 50          # the failure-rate window in this many buckets (0.2 s of 10 s: the
                      # grain of the recent stretch)
QUIET = 1.0           # seconds a worker waits before reporting the same member again


@dataclass(slots=True)
class Track:
    """One member's recent outcomes as one worker saw them."""
    uid: int
    status_run: int = 0
    gateway_run: int = 0
    bucket: int = 0
    requests: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    failures: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    quiet_until: float = 0.0

    def roll(self, bucket: int) -> None:
        """Move the window to `bucket`, emptying the buckets it passes."""
        for b in range(max(self.bucket + 1, bucket - BUCKETS + 1), bucket + 1):
            self.requests[b % BUCKETS] = self.failures[b % BUCKETS] = 0
        self.bucket = bucket


class Detector:
    """A worker's outcome tracking, by table slot; observe() says when to report a member."""

    __slots__ = ("per_second", "settings", "tracks")

    def __init__(self, settings: OutlierSettings) -> None:
        self.settings = settings
        self.per_second = BUCKETS / settings.failure_rate_window
        self.tracks: dict[int, Track] = {}

    def observe(self, slot: int, uid: int, outcome: int, now: float) -> int:
        """Record one outcome; the cause to report the member for (CAUSE_*), or 0."""
        bucket = int(now * self.per_second)
        track = self.tracks.get(slot)
        if track is None or track.uid != uid:
            track = self.tracks[slot] = Track(uid, bucket=bucket)
        elif bucket != track.bucket:
            track.roll(bucket)
        at = bucket % BUCKETS
        track.requests[at] += 1
        if outcome == OK:
            track.status_run = track.gateway_run = 0
            return 0
        track.failures[at] += 1
        if outcome == GATEWAY:
            track.gateway_run += 1
            track.status_run = 0
        else:
            track.status_run += 1
            track.gateway_run = 0
        cause = self._judge(track)
        if not cause or now < track.quiet_until:
            return 0
        # Reported: start afresh, and give the master time to act before asking again.
        self.tracks[slot] = Track(uid, bucket=bucket, quiet_until=now + QUIET)
        return cause

    def _judge(self, track: Track) -> int:
        s = self.settings
        if s.consecutive_5xx and track.status_run >= s.consecutive_5xx:
            return CAUSE_5XX
        if s.consecutive_gateway_failures and \
                track.gateway_run >= s.consecutive_gateway_failures:
            return CAUSE_GATEWAY
        if s.failure_rate:
            requests = sum(track.requests)
            if requests >= s.failure_rate_min_requests and \
                    sum(track.failures) >= s.failure_rate * requests:
                return CAUSE_RATE
            recent = s.failure_rate_recent_requests
            if recent and requests > recent and recent_share(track, recent) >= s.failure_rate:
                return CAUSE_RATE
        return 0

    def forget(self, slot: int) -> None:
        self.tracks.pop(slot, None)


def recent_share(track: Track, least: int) -> float:
    """The share of failures in the newest buckets that together hold at least `least`
    requests (the whole window when it holds fewer)."""
    requests = failures = 0
    at = track.bucket
    for back in range(BUCKETS):
        requests += track.requests[(at - back) % BUCKETS]
        failures += track.failures[(at - back) % BUCKETS]
        if requests >= least:
            break
    return failures / requests if requests else 0.0


def ejection_seconds(settings: OutlierSettings, ejections: int) -> float:
    """How long the `ejections`-th recent ejection lasts."""
    return min(settings.eject_time * max(ejections, 1),
               max(settings.max_eject_time, settings.eject_time))


def decayed(ejections: int, since_last_end: float, eject_time: float) -> int:
    """The count of recent ejections once the member has been back `since_last_end` seconds:
    one less for every `eject_time` (Envoy's multiplier decay)."""
    if since_last_end <= 0 or eject_time <= 0:
        return ejections
    return max(0, ejections - int(since_last_end / eject_time))


def may_eject(out_already: int, pool_size: int, max_share: float) -> bool:
    """May one more member of a pool of `pool_size`, `out_already` of them ejected, go out?
    At least one may always be, so a pool of one or two still loses a broken member (the
    panic rule brings it back if nothing else is left)."""
    allowed = max(1, int(max_share * pool_size + 1e-9))
    return out_already + 1 <= allowed
