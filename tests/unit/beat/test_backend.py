"""hbfork.beat.backend: `--workers N` serves at most N requests at once and beats the truth.

The backend runs in-process on a loopback port; its service time goes through `pause`, which
the tests replace with a gate they open themselves, so nothing waits on a clock: the test
knows the requests are held because the backend says so, and lets them go when it wants.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from hbfork.beat.backend import Backend

DEADLINE = 5.0  # seconds: only reached when something is broken


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until `condition` holds (each turn lets the server make progress)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0)


async def get(port: int, query: str = "delay=1") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /?{query} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    backend = next(line.split(": ", 1)[1] for line in head.split("\r\n")
                   if line.startswith("X-Backend"))
    return int(head.split()[1]), backend


def gated(backend: Backend) -> asyncio.Event:
    """Make every request's service time last until the returned event is set."""
    gate = asyncio.Event()

    async def pause(seconds: float) -> None:
        await gate.wait()

    backend.pause = pause
    return gate


async def serving(backend: Backend, body: Callable[[int], Awaitable[None]]) -> None:
    server = await asyncio.start_server(backend.serve, "127.0.0.1", 0)
    try:
        await body(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


def test_workers_limit_what_is_served_at_once_and_the_heartbeat_tells() -> None:
    backend = Backend("w2", capacity=10, delay_ms=0, workers=2)

    async def body(port: int) -> None:
        gate = gated(backend)
        assert backend.load() == (2, 0)
        clients = [asyncio.create_task(get(port)) for _ in range(3)]
        await until(lambda: backend.busy == 2 and backend.waiting == 1)
        assert backend.load() == (0, 2)    # ready = workers - busy; the waiting one is neither
        assert backend.inflight == 3
        gate.set()
        answers = await asyncio.gather(*clients)
        assert answers == [(200, "w2")] * 3
        assert backend.most_busy == 2      # the third was never served alongside the two
        assert backend.load() == (2, 0)

    asyncio.run(serving(backend, body))


def test_waiting_requests_are_served_in_arrival_order() -> None:
    backend = Backend("w1", capacity=10, delay_ms=0, workers=1)
    order: list[str] = []

    async def body(port: int) -> None:
        gate = gated(backend)
        first = asyncio.create_task(get(port, "delay=1&n=first"))
        await until(lambda: backend.busy == 1)
        rest = []
        for name in ("second", "third"):
            rest.append(asyncio.create_task(get(port, f"delay=1&n={name}")))
            waiting = backend.waiting + 1
            await until(lambda w=waiting: backend.waiting == w)  # type: ignore[misc]
        original = backend._serve_one

        async def recording(reader, writer, method, target, *args):  # type: ignore[no-untyped-def]
            order.append(target.rsplit("=", 1)[1])
            return await original(reader, writer, method, target, *args)

        backend._serve_one = recording  # type: ignore[method-assign]
        gate.set()
        await asyncio.gather(first, *rest)

    asyncio.run(serving(backend, body))
    assert order == ["second", "third"]


def test_without_workers_every_request_is_served_at_once() -> None:
    backend = Backend("free", capacity=2, delay_ms=0)

    async def body(port: int) -> None:
        gate = gated(backend)
        clients = [asyncio.create_task(get(port)) for _ in range(3)]
        await until(lambda: backend.inflight == 3)
        assert backend.load() == (0, 3)    # the default: capacity - in flight, floored at 0
        assert backend.waiting == 0
        gate.set()
        assert [a[0] for a in await asyncio.gather(*clients)] == [200] * 3

    asyncio.run(serving(backend, body))


def test_jitter_is_exponential_on_top_of_the_delay() -> None:
    backend = Backend("j", capacity=1, delay_ms=10, jitter_ms=20, seed=7)
    seen: list[float] = []

    async def pause(seconds: float) -> None:
        seen.append(seconds)

    backend.pause = pause

    async def body(port: int) -> None:
        for _ in range(400):
            await get(port, "x=1")

    asyncio.run(serving(backend, body))
    assert min(seen) >= 0.010
    mean_extra = sum(s - 0.010 for s in seen) / len(seen)
    assert 0.015 < mean_extra < 0.025   # mean 20 ms; 400 draws keep it well inside this


async def keepalive_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        query: str = "x=1") -> tuple[int, bytes]:
    """One GET on a kept-alive connection: (status, the head as received)."""
    writer.write(f"GET /?{query} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b": ", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    await reader.readexactly(length)
    return int(head.split()[1]), head


def test_a_fault_on_signal_starts_only_when_toggled() -> None:
    backend = Backend("f", capacity=10, delay_ms=0, fault="status", fault_status=503,
                      fault_active=False)
    backend.arrivals = []

    async def body(port: int) -> None:
        conn = await asyncio.open_connection("127.0.0.1", port)
        assert (await asyncio.wait_for(keepalive_get(*conn), DEADLINE))[0] == 200
        assert backend.fault_started is None
        backend.toggle_fault()
        started = backend.fault_started
        assert started is not None
        assert (await asyncio.wait_for(keepalive_get(*conn), DEADLINE))[0] == 503
        backend.toggle_fault()                       # the next SIGHUP ends it
        assert (await asyncio.wait_for(keepalive_get(*conn), DEADLINE))[0] == 200
        assert backend.fault_started == started      # when it began is kept
        conn[1].close()

    asyncio.run(serving(backend, body))
    assert len(backend.arrivals) == 3 and backend.arrivals == sorted(backend.arrivals)


def test_a_graceful_stop_closes_idle_connections_and_answers_the_busy_with_close() -> None:
    backend = Backend("g", capacity=10, delay_ms=0)

    async def body(port: int) -> None:
        idle = await asyncio.open_connection("127.0.0.1", port)
        busy = await asyncio.open_connection("127.0.0.1", port)
        assert (await keepalive_get(*idle))[0] == 200          # now idle, kept alive
        gate = gated(backend)
        answer = asyncio.create_task(keepalive_get(*busy, "delay=1"))
        await until(lambda: backend.inflight == 1)
        backend.begin_graceful_stop()
        assert backend.beating is False
        # closed without a request
        assert await asyncio.wait_for(idle[0].read(), DEADLINE) == b""
        gate.set()
        status, head = await asyncio.wait_for(answer, DEADLINE)
        assert status == 200 and b"Connection: close" in head  # answered, then closed
        assert await asyncio.wait_for(busy[0].read(), DEADLINE) == b""
        for _, writer in (idle, busy):
            writer.close()

    asyncio.run(serving(backend, body))
