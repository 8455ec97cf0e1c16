"""HTTP mode: every request on a client connection is balanced on its own.

Theory of operation
-------------------
An HttpSession owns one client connection and, while a request is in flight, one member
connection (fresh, or taken from the worker's keep-alive pool). Requests are served one at a
time in arrival order; pipelined requests wait in the input buffer, which keeps responses in
order. Bytes move with back-pressure: a side is read only while what is queued for the other
side is below HIGH_WATER, so a slow client holds at most a buffer or two of a large response
in memory, never the response.

States: HEAD (reading a request head) -> CONNECT (dialing a member) -> FORWARD (sending the
request, receiving the response) -> HEAD again for keep-alive, or CLOSING (flush) -> LINGER
(half-closed, discarding what the client still sends for a moment, so that unread bytes do not
make the kernel reset the connection and destroy our last response in transit) -> closed.
Upgrade requests that get 101 switch to TUNNEL, a plain byte relay.

A client that half-closes after pipelining requests gets every complete request answered: a
FIN is only taken as the end once the bytes before it are read.

Failures: a refused or timed-out connect marks the member in error and the request goes to
another member, up to `retries`. A pooled connection the member closed before answering is
retried once on a fresh connection, if the request is idempotent and has no body. Anything
else that fails before the response head reached the client is answered 502 (or 504 for a
response timeout); after that, the client connection is closed, which is the only honest
signal left. A client that stops sending its request body gets 408.

Expect: 100-continue is answered by the proxy itself once a member connection is ready for the
body, and not forwarded: members that ignore Expect would otherwise leave the client waiting.
"""

from __future__ import annotations

import errno
import socket
import time
from typing import TYPE_CHECKING

from hbfork import http11
from hbfork.errors import ProtocolError
from hbfork.http11 import ChunkedBody, LengthBody, RequestHead, ResponseHead, UntilClose
from hbfork.keepalive import MemberConnection
from hbfork.loop import ERROR, RDHUP, READ, WRITE
from hbfork.tcp import start_connect
from hbfork.upstreams import Target

if TYPE_CHECKING:
    from hbfork.worker import Worker

HEAD, CONNECT, FORWARD, TUNNEL, CLOSING, LINGER = range(6)
HIGH_WATER = 256 * 1024
# While draining, a connection with no request in progress is closed after this idle time; a
# request arriving before then is still served (with Connection: close). Closing at once would
# race requests already on their way, which clients see as a reset.
DRAIN_IDLE_GRACE = 2.0
MAX_RESPONSE_HEAD = 64 * 1024
LINGER_QUIET = 0.5   # close once a half-closed client has sent nothing for this long
LINGER_MAX = 5.0     # and in any case after this long
LINGER_BYTES = 4 << 20  # or after discarding this much


class HttpSession:
    __slots__ = (
        "accounted", "body", "bytes_to_client", "client", "client_eof", "client_fd",
        "client_hup", "client_ip", "client_out", "client_parked", "closed", "conn",
        "drain_requested", "exchange_started", "fresh_retry", "head_started", "inbuf",
        "inflight_target", "keep_alive", "linger_left", "linger_until", "member_started",
        "request", "request_done", "response", "response_body", "sent_to_client", "state",
        "status", "target", "timer", "tried", "upbuf", "upstream_out", "worker",
    )

    def __init__(self, worker: Worker, client: socket.socket) -> None:
        self.worker = worker
        self.client = client
        self.client_fd = client.fileno()
        try:
            self.client_ip = client.getpeername()[0]
        except OSError:
            self.client_ip = "-"
        self.inbuf = bytearray()
        self.upbuf = bytearray()
        self.client_out = bytearray()
        self.upstream_out = bytearray()
        self.client_eof = False  # the client sends nothing more (the bytes before its FIN read)
        self.client_hup = False  # it half-closed, but bytes before the FIN are still unread
        self.client_parked = False  # it sent what we cannot take yet: watch for RDHUP only
        self.linger_until = 0.0
        self.linger_left = LINGER_BYTES
        self.closed = False
        self.drain_requested = False
        self.timer = worker.loop.timer(self.on_deadline)
        self.head_started = worker.loop.now   # the first byte of the head being read
        self.conn: MemberConnection | None = None
        self.inflight_target: Target | None = None
        self._reset_exchange()
        self.state = HEAD
        worker.loop.add(self.client_fd, READ, self._on_client)
        self._set_deadline(worker.config.http.header_timeout)

    def _reset_exchange(self) -> None:
        self.request: RequestHead | None = None
        self.response: ResponseHead | None = None
        self.body: LengthBody | ChunkedBody | None = None
        self.response_body: LengthBody | ChunkedBody | UntilClose | None = None
        self.target: Target | None = None
        self.tried: set[int] = set()
        self.request_done = False       # the whole request body was read
        self.sent_to_client = False     # the response head (ours or the member's) went out
        self.keep_alive = False
        self.status = 0
        self.bytes_to_client = 0
        self.exchange_started = 0.0
        self.member_started = 0.0       # when the request went to the member that answered
        self.fresh_retry = False
        self.accounted = False          # request_done() was reported for this request
        self.head_started = self.worker.loop.now  # a pipelined head already waits from now

    # --- timing

    def _set_deadline(self, seconds: float) -> None:
        """Time out `seconds` from now (the one timer of this session moves)."""
        loop = self.worker.loop
        loop.set_timer(self.timer, loop.now + seconds)

    def on_deadline(self, now: float) -> None:
        self._on_deadline()
        if not self.closed:
            self._advance()  # a 408/504 or a failover queued by the timeout goes out now

    def _on_deadline(self) -> None:
        if self.state == HEAD:
            if self.inbuf:
                self._fail(408, "request head not received in time")
            else:
                self.close()  # an idle keep-alive connection: close quietly
        elif self.state == CONNECT:
            self._connect_failed(errno.ETIMEDOUT)
        elif self.state == FORWARD and self.response is None and (
                self.request_done or self.upstream_out):
            # The member has not answered, or stopped taking the request body.
            self.worker.count_upstream_timeout()
            self._fail(504, "the member did not answer in time")
        elif self.state == FORWARD and self.response is None:
            self._fail(408, "request body not received in time")
        else:
            self.close()  # no progress in either direction for client_timeout

    # --- client side

    def _on_client(self, mask: int) -> None:
        if self.state == LINGER:
            return self._linger()
        if mask & WRITE:
            if not self._flush_client():
                return
        if mask & ~WRITE:
            if self._wants_client_read():
                if not self._read_client():
                    return
            elif mask & ERROR:
                return self.close()  # reset by the client: nothing can reach it any more
            else:
                self.client_parked = True  # bytes or a FIN we cannot take yet
                if mask & RDHUP:
                    self._client_half_closed()
                    if self.closed:
                        return
        self._advance()

    def _client_half_closed(self) -> None:
        """RDHUP while the client is not being read. Its FIN ends the stream only if no bytes
        precede it: pipelined requests or body bytes still queued are read in their turn."""
        try:
            pending = self.client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            pending = b"?"
        except OSError:
            return self.close()
        if pending:
            self.client_hup = True  # stop watching; the EOF is read after the bytes
        else:
            self.client_eof = True

    def _wants_client_read(self) -> bool:
        if self.client_eof or self.state == CLOSING:
            return False
        if self.state in (HEAD, LINGER):
            return True
        if self.state == TUNNEL:
            return len(self.upstream_out) < HIGH_WATER
        return (self.request is not None and not self.request_done and self.conn is not None
                and self.state == FORWARD and len(self.upstream_out) < HIGH_WATER)

    def _read_client(self) -> bool:
        buffer = self.worker.buffer
        try:
            n = self.client.recv_into(buffer)
        except BlockingIOError:
            return True
        except OSError:
            self.close()
            return False
        if n == 0:
            self.client_eof = True
            return True
        self.worker.count_bytes(True, n)
        if self.state == HEAD:
            if not self.inbuf:
                self.head_started = self.worker.loop.now  # see _parse_head
        elif self.state != FORWARD or self.response is not None or not self.request_done:
            self._set_deadline(self.worker.config.http.client_timeout)
        self.inbuf += buffer[:n]
        return True

    # --- the state machine

    def _advance(self) -> None:
        """Make all progress the buffers allow, then set epoll interest to match."""
        try:
            self._step()
        except ProtocolError as err:
            self._fail(err.status, err.detail)
        if self.closed:
            return
        # Output is queued by the steps above and written here, so a response head and the
        # body bytes that came with it leave in one send().
        if self.upstream_out and self.conn is not None and self.state in (FORWARD, TUNNEL):
            self._flush_member()
            if self.closed:
                return
        if self.client_out and not self._flush_client():
            return
        if self.state == HEAD and self.client_eof and not self.inbuf:
            self.state = CLOSING
        if self.state == CLOSING and not self.client_out:
            self._start_linger()
        if not self.closed:
            self._update_interest()

    def _step(self) -> None:
        if self.state == HEAD and self.inbuf:
            self._parse_head()
        while self.state == FORWARD:
            request = self.request
            self._forward_request_body()
            self._process_response()
            if self.request is request:
                break  # no pipelined request started meanwhile: wait for I/O
        if self.state == TUNNEL:
            self._tunnel()

    def _parse_head(self) -> None:
        config = self.worker.config.http
        start = http11.skip_empty_lines(self.inbuf, 0)
        if start:
            del self.inbuf[:start]  # else a stream of CRLFs would grow the buffer forever
            if not self.inbuf:
                return
        end = http11.find_head(self.inbuf, 0, config.max_request_line,
                               config.max_header_size)
        if end < 0:
            if self.client_eof:
                raise ProtocolError(400, "connection closed inside a request head")
            # The whole head must arrive within header_timeout of its first byte; later bytes
            # do not extend it (slowloris sends one byte at a time). A head that arrives in
            # one read, the usual case, never needs this deadline.
            loop = self.worker.loop
            self._set_deadline(self.head_started + config.header_timeout - loop.now)
            return
        head = bytes(self.inbuf[:end])
        del self.inbuf[:end]
        self.exchange_started = time.monotonic()
        self.request = request = http11.parse_request_head(head, self.worker.limits)
        self.keep_alive = request.keep_alive
        if request.chunked:
            self.body = ChunkedBody(limit=config.max_body_size)
        elif request.content_length:
            self.body = LengthBody(request.content_length)
        else:
            self.request_done = True
        self._dispatch()

    def _dispatch(self) -> None:
        """Pick a member for the current request and get a connection to it."""
        worker = self.worker
        if len(self.tried) > worker.config.http.retries:
            return self._fail(502, "no member accepted the connection")
        target = worker.upstreams.choose(self.tried)
        if target is None:
            if self.tried:
                return self._fail(502, "no member accepted the connection")
            worker.count_no_member()
            return self._fail(503, "no member is available", (("Retry-After", "1"),))
        if self.tried:
            worker.count_retry()
        self.tried.add(target.slot)
        self.target = target
        assert self.request is not None
        request = self.request
        # A request that may be replayed survives a connection the member just closed (it is
        # retried on a fresh one), so only the others pay a syscall to check it first.
        conn = None if request.upgrade else worker.conn_pool.checkout(
            target, verify=not (request.idempotent and not request.has_body))
        if conn is not None:
            return self._attached(conn)
        self._connect(target)

    def _connect(self, target: Target) -> None:
        try:
            sock, err = start_connect(target)
        except OSError as error:  # out of fds or memory: our problem, not the member's
            self.worker.resource_error(error)
            return self._fail(503, "the proxy is out of resources", (("Retry-After", "1"),))
        self.conn = MemberConnection(sock, target, self.worker.conn_pool)
        self.state = CONNECT
        self.worker.loop.add(self.conn.fd, WRITE, self._on_member)
        if err not in (0, errno.EINPROGRESS):
            return self._connect_failed(err)
        self._set_deadline(self.worker.config.http.connect_timeout)

    def _connect_failed(self, err: int) -> None:
        assert self.conn is not None
        self.worker.member_failed(self.conn.target, errno.errorcode.get(err, str(err)))
        self.conn.close()
        self.conn = None
        self.state = FORWARD  # between members; _dispatch decides what is next
        self._dispatch()

    def _attached(self, conn: MemberConnection) -> None:
        """`conn` is connected: send the request head (and the body bytes already here)."""
        assert self.request is not None
        worker = self.worker
        self.conn = conn
        self.state = FORWARD
        worker.loop.handlers[conn.fd] = self._on_member
        self._member_done(0)
        worker.upstreams.started(conn.target)
        self.inflight_target = conn.target
        self.member_started = worker.loop.now
        self.upstream_out += http11.request_head_for_member(
            self.request, self.client_ip, worker.config.http.forwarded_headers,
            member_host=_authority(conn.target))
        if self.request.expect_continue and not self.request_done and not self.inbuf:
            # We answer the expectation ourselves (and do not forward it), now that a member
            # is ready to take the body: members that ignore Expect would make the client wait.
            self._to_client(http11.CONTINUE)
        http = worker.config.http
        # Until the body is all here we wait on the client, not the member.
        self._set_deadline(http.response_timeout if self.request_done else http.client_timeout)

    # --- request body

    def _forward_request_body(self) -> None:
        if self.request_done or self.body is None or self.conn is None:
            return
        if self.inbuf and len(self.upstream_out) < HIGH_WATER:
            taken = self.body.scan(self.inbuf, 0, len(self.inbuf))
            self.upstream_out += self.inbuf[:taken]
            del self.inbuf[:taken]
        if self.body.done:
            self.request_done = True
            self._set_deadline(self.worker.config.http.response_timeout)
        elif self.client_eof:
            raise ProtocolError(400, "connection closed inside a request body")

    # --- member side

    def _on_member(self, mask: int) -> None:
        conn = self.conn
        if conn is None:
            return
        if self.state == CONNECT:
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._connect_failed(err)
            else:
                self._attached(conn)
        else:
            if mask & WRITE and self.upstream_out:
                self._flush_member()
            if mask & ~WRITE and self.conn is conn and self._wants_member_read():
                self._read_member()
        if not self.closed:
            self._advance()

    def _wants_member_read(self) -> bool:
        if self.conn is None or self.state not in (FORWARD, TUNNEL):
            return False
        return len(self.client_out) < HIGH_WATER

    def _read_member(self) -> None:
        assert self.conn is not None
        buffer = self.worker.buffer
        try:
            n = self.conn.sock.recv_into(buffer)
        except BlockingIOError:
            return
        except OSError:
            n = 0
        if n == 0:
            return self._member_closed()
        self.upbuf += buffer[:n]
        self._set_deadline(self.worker.config.http.client_timeout
                           if self.response is not None else
                           self.worker.config.http.response_timeout)

    def _member_closed(self) -> None:
        """EOF (or an error) from the member."""
        conn = self.conn
        assert conn is not None
        if self.state == TUNNEL:
            self.client_out += self.upbuf
            self.upbuf.clear()
            self._release_member(reusable=False)
            self.state = CLOSING
            return
        if isinstance(self.response_body, UntilClose):
            self.response_body.done = True  # finished once upbuf has gone to the client
            return
        if self.response is None and not self.upbuf and self._may_retry_fresh():
            # The keep-alive race: the member closed an idle connection as we reused it.
            return self._retry_fresh()
        if self.response is None:
            return self._fail(502, "the member closed the connection without answering"
                              if not self.upbuf else "the member closed the connection "
                              "mid-answer")
        self.close()  # the head went out already: closing is the only signal left

    def _may_retry_fresh(self) -> bool:
        """A request may be sent again only if nothing of it can have had an effect: it came on
        a reused connection, is idempotent, has no body, and was not retried already."""
        request, conn = self.request, self.conn
        return (conn is not None and conn.reused and request is not None
                and request.idempotent and not request.has_body and self.response is None
                and not self.fresh_retry)

    def _retry_fresh(self) -> None:
        assert self.conn is not None
        target = self.conn.target
        self._release_member(reusable=False)
        self.upstream_out.clear()
        self.upbuf.clear()
        self.fresh_retry = True
        self._connect(target)

    def _process_response(self) -> None:
        while self.state == FORWARD and self.response is None and self.upbuf:
            if not self._parse_response_head():
                return
        body = self.response_body
        if self.state == FORWARD and body is not None:
            if self.upbuf:
                self._forward_response_body()
            if body.done and not (self.upbuf and isinstance(body, UntilClose)):
                self._finish_exchange()

    def _parse_response_head(self) -> bool:
        end = http11.find_head(self.upbuf, 0, MAX_RESPONSE_HEAD, MAX_RESPONSE_HEAD,
                               request=False)
        if end < 0:
            return False
        assert self.request is not None
        head = bytes(self.upbuf[:end])
        del self.upbuf[:end]
        response = http11.parse_response_head(head, self.request.method)
        if response.interim:
            # 100 answers an Expect we never forward (the client had ours); 102/103 pass.
            if self.request.version == 11 and response.status != 100:
                self._to_client(head)
            return True
        if response.status == 101:
            return self._switch_protocols(response)
        self.response = response
        self.status = response.status
        self._start_response(response)
        return True

    def _start_response(self, response: ResponseHead) -> None:
        request = self.request
        assert request is not None
        dechunk = response.chunked and request.version == 10
        if response.chunked:
            self.response_body = ChunkedBody(decode=dechunk, status=502)
        elif response.content_length is None:
            self.response_body = UntilClose()
        else:
            self.response_body = LengthBody(response.content_length)
        framed = response.chunked or response.content_length is not None
        self.keep_alive = (self.keep_alive and framed and not dechunk and self.request_done
                           and (not self.client_eof or bool(self.inbuf))
                           and not self.worker.draining and not self.drain_requested)
        self._to_client(http11.response_head_for_client(response, self.keep_alive, dechunk,
                                                        request.version))
        self.sent_to_client = True
        self._set_deadline(self.worker.config.http.client_timeout)

    def _forward_response_body(self) -> None:
        body = self.response_body
        assert body is not None
        if len(self.client_out) >= HIGH_WATER:
            return
        taken = body.scan(self.upbuf, 0, len(self.upbuf))
        if isinstance(body, ChunkedBody) and body.decode:
            for start, end in body.pieces:
                self._to_client(self.upbuf[start:end])
        else:
            self._to_client(self.upbuf[:taken])
        del self.upbuf[:taken]
        self.bytes_to_client += taken

    def _switch_protocols(self, response: ResponseHead) -> bool:
        assert self.request is not None
        if not self.request.upgrade:
            raise ProtocolError(502, "101 from the member without an upgrade request")
        self.response, self.status = response, 101
        self._to_client(http11.response_head_for_client(response, True, False,
                                                        self.request.version))
        self.sent_to_client = True
        self.state = TUNNEL
        self.request_done = True
        self._account()
        return False

    def _finish_exchange(self) -> None:
        """The response is complete: pool the member connection, then next request or close."""
        reusable = bool(self.response and self.response.keep_alive and self.request_done
                        and not self.upbuf)
        self._account()
        self._release_member(reusable=reusable)
        if self.keep_alive:  # even after a client EOF: pipelined requests may be in inbuf
            self._reset_exchange()
            self.state = HEAD
            self._idle_deadline()
            if self.inbuf:
                self._parse_head()  # a pipelined request is already here
        else:
            self.state = CLOSING

    def _release_member(self, reusable: bool) -> None:
        self._member_done(0)
        conn = self.conn
        if conn is None:
            return
        self.conn = None
        if reusable:
            self.worker.conn_pool.checkin(conn)
        else:
            conn.close()

    def _member_done(self, status: int) -> None:
        """End the member's in-flight count for this request (status 0: no response)."""
        target = self.inflight_target
        if target is not None:
            self.inflight_target = None
            self.worker.upstreams.finished(target, status)

    def _account(self) -> None:
        """Report the request once: counters, latency, access log."""
        self._member_done(self.status)
        if not self.accounted:
            self.accounted = True
            self.worker.request_done(self, self.status, self.target)

    # --- tunnel (after 101 Switching Protocols)

    def _tunnel(self) -> None:
        if self.inbuf and len(self.upstream_out) < HIGH_WATER:
            self.upstream_out += self.inbuf
            self.inbuf.clear()
        if self.upbuf and len(self.client_out) < HIGH_WATER:
            self._to_client(self.upbuf)
            self.upbuf.clear()
        if self.client_eof and not self.upstream_out and self.conn is not None:
            try:
                self.conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    # --- output

    def _to_client(self, data: bytes | bytearray | memoryview) -> None:
        self.client_out += data

    def _flush_client(self) -> bool:
        """Write what is queued for the client; False if the session ended."""
        try:
            sent = self.client.send(self.client_out)
        except BlockingIOError:
            return True
        except OSError:
            self.close()
            return False
        del self.client_out[:sent]
        self.worker.count_bytes(False, sent)
        return True

    def _flush_member(self) -> None:
        """Write what is queued for the member; a failure is handled (retry, 502 or close)."""
        assert self.conn is not None
        try:
            sent = self.conn.sock.send(self.upstream_out)
        except BlockingIOError:
            return
        except OSError:
            return self._member_write_failed()
        del self.upstream_out[:sent]

    def _member_write_failed(self) -> None:
        """The member reset the connection while we were sending the request."""
        if self._may_retry_fresh():
            return self._retry_fresh()
        if self.response is None:
            self._fail(502, "the member reset the connection")
        else:
            self.close()

    def _update_interest(self) -> None:
        loop = self.worker.loop
        if self._wants_client_read():
            self.client_parked = False
            client_mask = READ
        elif self.state in (CONNECT, FORWARD) and not (self.client_eof or self.client_hup):
            # Left readable until the client sends something we cannot take yet (a pipelined
            # request): parking it at once would cost two epoll_ctl calls per request.
            client_mask = RDHUP if self.client_parked else READ
        else:
            client_mask = 0
        if self.client_out:
            client_mask |= WRITE
        loop.set_mask(self.client_fd, client_mask)
        conn = self.conn
        if conn is not None and self.state != CONNECT:
            mask = READ if self._wants_member_read() else 0
            if self.upstream_out:
                mask |= WRITE
            loop.set_mask(conn.fd, mask)

    # --- endings

    def _fail(self, status: int, detail: str,
              extra: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer `status` ourselves, if the client has not seen a response head yet."""
        if self.sent_to_client:
            return self.close()
        request = self.request
        self._release_member(reusable=False)
        # The connection can carry on only if the request was read whole and was sound.
        keep = (status in (502, 503, 504) and request is not None and self.request_done
                and self.keep_alive and (not self.client_eof or bool(self.inbuf))
                and not self.worker.draining and not self.drain_requested)
        if status < 500:
            self.worker.count_client_error()
        head_only = request is not None and request.method == b"HEAD"
        self._to_client(http11.error_response(status, detail, keep_alive=keep, extra=extra,
                                              head_only=head_only))
        self.status = status
        self.sent_to_client = True
        if not self.accounted:
            self.accounted = True
            self.worker.request_done(self, status, None)
        if keep:
            self._reset_exchange()
            self.state = HEAD
            self._idle_deadline()
            if self.inbuf:
                self._advance()
        else:
            self.state = CLOSING  # _advance flushes the answer, then lingers
            self.inbuf.clear()
            self._set_deadline(self.worker.config.http.client_timeout)

    def _start_linger(self) -> None:
        """Everything is flushed: half-close, then discard what the client still sends until
        it closes too or goes quiet. Closing with its bytes unread would make the kernel send
        a reset, and a reset can destroy our last response before the client reads it."""
        if self.client_eof:
            return self.close()
        try:
            self.client.shutdown(socket.SHUT_WR)
        except OSError:
            return self.close()
        self.state = LINGER
        self.inbuf.clear()
        self.linger_until = self.worker.loop.now + LINGER_MAX
        self._set_deadline(LINGER_QUIET)

    def _linger(self) -> None:
        try:
            n = self.client.recv_into(self.worker.buffer)
        except BlockingIOError:
            return
        except OSError:
            n = 0
        self.linger_left -= n
        left = self.linger_until - self.worker.loop.now
        if n == 0 or self.linger_left <= 0 or left <= 0:
            return self.close()
        self._set_deadline(min(LINGER_QUIET, left))

    def drain(self) -> None:
        """Graceful stop: every connection closes after its current (or next) response;
        one with no request in progress closes after DRAIN_IDLE_GRACE."""
        self.drain_requested = True
        if self.state == HEAD and not self.inbuf:
            self._idle_deadline()

    def _idle_deadline(self) -> None:
        http = self.worker.config.http
        if self.drain_requested:
            self._set_deadline(min(DRAIN_IDLE_GRACE, http.keepalive_timeout))
        else:
            self._set_deadline(http.keepalive_timeout)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.worker.loop.cancel(self.timer)  # its heap entry may outlive us; it drops us
        self._release_member(reusable=False)
        if self.request is not None and not self.accounted:
            self.accounted = True
            self.worker.request_done(self, self.status, self.target, aborted=True)
        self.worker.loop.remove(self.client_fd)
        self.client.close()
        self.worker.session_closed(self)


def _authority(target: Target) -> bytes:
    """host:port of a member, for the Host header of a request that came without one."""
    return target.address.encode()
