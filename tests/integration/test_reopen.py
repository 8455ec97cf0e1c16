"""A member that is leaving gets new connections one at a time (hbfork.core.reopen), with
real processes: `hbfork backend --stop graceful` on SIGTERM closes its kept-alive
connections, stops accepting, and leaves its listening socket open for `--stop-drain`
seconds (the kernel completes connections nobody accepts, then resets them). Without the
probe rule every new connection dialled there in those seconds held a client until the reset
(about half of them in bench-gray); with it, at most one request per worker waits there.
The no-answer rule is off here, so nothing else could have freed those clients sooner."""

from __future__ import annotations

from tests.integration.test_no_answer import RESPONSE_TIMEOUT, Load, stop_under_load

DRAIN = 2.0     # seconds the leaving member's listener completes connections it never accepts
WORKERS = 2


def test_a_member_leaving_gracefully_holds_at_most_one_client_per_worker(cluster):
    proxy = cluster.proxy([], heartbeat={"discover": True},
                          proxy={"workers": WORKERS},
                          http={"response_timeout": RESPONSE_TIMEOUT},
                          outlier={"no_answer_after": 0},
                          pool=[{"name": "default", "discover": True}])
    good = [cluster.backend(name, 10, delay_ms=2, heartbeat=proxy.heartbeat_address)
            for name in ("a", "b")]
    leaving = cluster.backend("leaving", 10, heartbeat=proxy.heartbeat_address,
                              extra=("--stop", "graceful", "--stop-drain", str(DRAIN)))
    proxy.wait_eligible(*(b.address for b in (*good, leaving)))
    with Load(proxy.url, clients=8) as load:
        before = stop_under_load(load, leaving, "leaving")
    counts = load.outcomes()
    assert set(counts) == {"a", "b", "leaving"}, counts  # not one failure, 502 or 504
    # A request that sat on the leaving member's backlog took about DRAIN (then it was reset
    # and retried); every other one took milliseconds.
    held = [took for _, took in load.results[before:] if took >= DRAIN / 2]
    assert len(held) <= WORKERS, (held, counts)
