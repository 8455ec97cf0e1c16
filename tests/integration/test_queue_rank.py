"""The front queue's ranks with real processes (issue 24): a request on a new connection ranks
[balance] queue_fresh_offset after its arrival, one on a connection whose last exchange went
well by its arrival; the lowest rank is served first. Queue timeouts count from the arrival.

One worker: the order across workers is the unit tests' (tests/unit/proxy/test_front_queue.py);
with two, a place freed when a heartbeat shows room may go to the later waiter's worker once
the earlier one's has let places go by for HANDOVER_GRACE (by design, FIFO or ranks alike)."""

from __future__ import annotations

import http.client
import threading
import time

from tests.integration.harness import get, wait_until
from tests.integration.test_overload import pool_state, start

HOLD_MS = 1500  # the request that holds the member's one place
SERVE_MS = 300  # each queued request's own service time
ONE_WORKER = {"workers": 1}


class Request(threading.Thread):
    """One request in the background, on `conn` (None: a new connection): its status and when
    its response was read."""

    def __init__(self, url: str, path: str, conn: http.client.HTTPConnection | None = None,
                 timeout: float = 15) -> None:
        super().__init__(daemon=True)
        self.url, self.path, self.conn, self.timeout = url, path, conn, timeout
        self.status = -1
        self.done_at = 0.0

    def run(self) -> None:
        try:
            response, _, conn = get(self.url, self.path, conn=self.conn, timeout=self.timeout)
            self.status = response.status
            conn.close()
        except (OSError, http.client.HTTPException):
            self.status = 0
        self.done_at = time.monotonic()


def queue_behind_a_held_member(proxy, backend) -> tuple[Request, Request, Request]:
    """A connection completes one quick exchange (it returns); a request holds the member's
    one place; a new connection's request queues; then the returning connection's."""
    _, _, returning_conn = get(proxy.url, "/?delay=0")  # one exchange that went well
    hold = Request(proxy.url, f"/hold?delay={HOLD_MS}")
    hold.start()
    wait_until(lambda: proxy.member(backend.address)["in_flight"] == 1, 5,
               message="the holding request to be in flight")
    fresh = Request(proxy.url, f"/fresh?delay={SERVE_MS}")
    fresh.start()
    wait_until(lambda: pool_state(proxy)["queued"] == 1, 5, message="the new connection to wait")
    returning = Request(proxy.url, f"/returning?delay={SERVE_MS}", conn=returning_conn)
    returning.start()
    wait_until(lambda: pool_state(proxy)["queued"] == 2, 5,
               message="the returning connection to wait")
    for request in (hold, fresh, returning):
        request.join(15)
    return hold, fresh, returning


def test_a_returning_connection_is_served_before_a_new_one_that_queued_first(cluster):
    proxy, (backend,) = start(cluster, 1, delay_ms=0, proxy=ONE_WORKER,
                              balance={"queue_fresh_offset": 1.0})
    hold, fresh, returning = queue_behind_a_held_member(proxy, backend)
    assert (hold.status, fresh.status, returning.status) == (200, 200, 200)
    # the member serves one at a time: the returning request went when the place freed, the
    # new connection's one service time later
    assert returning.done_at < fresh.done_at
    assert fresh.done_at - returning.done_at >= SERVE_MS / 1000 * 0.8
    assert pool_state(proxy)["queued"] == 0


def test_with_offset_zero_the_queue_is_first_come_first_served(cluster):
    """The same sequence with queue_fresh_offset = 0, the default: arrival order (what makes
    the test above able to fail)."""
    proxy, (backend,) = start(cluster, 1, delay_ms=0, proxy=ONE_WORKER)
    hold, fresh, returning = queue_behind_a_held_member(proxy, backend)
    assert (hold.status, fresh.status, returning.status) == (200, 200, 200)
    assert fresh.done_at < returning.done_at
    assert returning.done_at - fresh.done_at >= SERVE_MS / 1000 * 0.8


def test_a_new_connections_queue_timeout_counts_from_its_arrival(cluster):
    """Its rank is 5 s after its arrival; its 503 comes queue_timeout (0.5 s) after the
    arrival all the same."""
    proxy, (backend,) = start(cluster, 1, delay_ms=0, proxy=ONE_WORKER,
                              balance={"queue_timeout": 0.5, "queue_fresh_offset": 5.0})
    hold = Request(proxy.url, "/hold?delay=3000")
    hold.start()
    wait_until(lambda: proxy.member(backend.address)["in_flight"] == 1, 5,
               message="the holding request to be in flight")
    started = time.monotonic()
    response, body, conn = get(proxy.url, "/fresh")
    waited = time.monotonic() - started
    conn.close()
    hold.join(10)
    assert response.status == 503 and b"queue_timeout" in body
    assert 0.4 <= waited < 1.5, waited
    assert hold.status == 200
