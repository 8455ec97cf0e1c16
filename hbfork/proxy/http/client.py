"""The client side of an HTTP session: reading requests, writing responses, epoll interest,
half-closes, and lingering after the last response.

A client that half-closes after pipelining requests gets every complete request answered: a
FIN is only taken as the end once the bytes before it are read. After the last response the
connection is half-closed and what the client still sends is discarded for a moment (LINGER),
so unread bytes do not make the kernel reset the connection and destroy that response in transit.
"""

from __future__ import annotations

import socket

from hbfork.core.http11 import LengthBody
from hbfork.proxy.http.state import (
    CLOSING,
    CONNECT,
    FORWARD,
    HEAD,
    HIGH_WATER,
    LINGER,
    LINGER_MAX,
    LINGER_QUIET,
    QUEUED,
    TUNNEL,
    ExchangeState,
)
from hbfork.proxy.loop import EPOLLIN, ERROR, RDHUP, READ, WRITE
from hbfork.proxy.relay import SPLICE_AFTER, splice_available
from hbfork.proxy.tls import WOULD_BLOCK, peek, raw_recv_into

# A request body of known length with at least SPLICE_AFTER bytes still to come goes from the
# client's socket to the member's through a kernel pipe (splice(2)), never through Python
# buffers: uploads took twice the CPU per MiB of downloads when copied (scripts/bench,
# 1 MiB POSTs). Plain connections only: over TLS, splice would move ciphertext.
SPLICE_BODIES = splice_available()


class ClientSide(ExchangeState):
    __slots__ = ()

    def _on_client(self, mask: int) -> None:
        if mask == EPOLLIN and self.state == HEAD and self.fast and not self.inbuf and \
                not self.client_out and not self.client_hup:
            return self._fast_request()
        if self.state == LINGER:
            return self._linger()
        if self.state == QUEUED and mask & (RDHUP | ERROR):
            return self._client_left_queue()  # gone before a member had room: nothing sent
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
            pending = peek(self.client)
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
        if self.request is None or self.request_done or self.conn is None or \
                self.state != FORWARD:
            return False
        relay = self.body_relay
        if relay is not None and relay.waiting():
            return False  # the pipe holds bytes the member has not taken yet
        if self._body_splices():
            # Let what is queued for the member go first, then splice the rest: reading on
            # into the buffers meanwhile would keep the queue from ever emptying, and the
            # whole body would be copied.
            return not self.upstream_out and not self.inbuf
        return len(self.upstream_out) < HIGH_WATER

    def _body_splices(self) -> bool:
        """The rest of this request body goes through a kernel pipe (see SPLICE_BODIES)."""
        body, conn, relay = self.body, self.conn, self.body_relay
        return (type(body) is LengthBody and body.remaining >= SPLICE_AFTER and SPLICE_BODIES
                and self.tls is None and conn is not None and conn.tls is None
                and (relay is None or relay.splice))

    def _read_client(self) -> bool:
        if self.state == FORWARD and not self.request_done and not self.inbuf and \
                not self.upstream_out and self._body_splices():
            return self._relay_body_bulk(self.body)  # type: ignore[arg-type]  # LengthBody
        buffer = self.ctx.buffer
        try:
            n = self.client.recv_into(buffer)
        except WOULD_BLOCK:  # BlockingIOError, or TLS waiting for a whole record
            return True
        except OSError:
            self.close()
            return False
        if n == 0:
            self.client_eof = True
            return True
        self.ctx.count_bytes(True, n)
        if self.state == HEAD:
            if not self.inbuf:
                self.head_started = self.ctx.loop.now  # see _parse_head
        elif self.state != FORWARD or self.response is not None or not self.request_done:
            self._set_deadline(self.ctx.http.client_timeout)
        if self.state == FORWARD and type(self.body) is LengthBody and not self.request_done \
                and self.conn is not None and not self.inbuf and not self.upstream_out:
            self._relay_request_bytes(n)
            if self.closed:
                return False
        else:
            self.inbuf += buffer[:n]
        if self.tls is not None and self.client.pending():
            return self._read_client()  # decrypted bytes epoll cannot see: take them now
        return True

    def _send_client_now(self, data: memoryview) -> int:
        """Write `data` to the client now: bytes taken, or -1 if the session ended."""
        try:
            sent = self.client.send(data) if self.tls is None else \
                self.tls.send(self.client, data)
        except BlockingIOError:
            return 0
        except OSError:
            self.close()
            return -1
        self.ctx.count_bytes(False, sent)
        return sent

    def _to_client(self, data: bytes | bytearray | memoryview) -> None:
        self.client_out += data

    def _flush_client(self) -> bool:
        """Write what is queued for the client; False if the session ended."""
        try:
            if self.tls is None:
                sent = self.client.send(self.client_out)
            else:
                sent = self.tls.send(self.client, self.client_out)
        except BlockingIOError:
            return True
        except OSError:
            self.close()
            return False
        del self.client_out[:sent]
        self.ctx.count_bytes(False, sent)
        return True

    def _update_interest(self) -> None:
        loop = self.ctx.loop
        if self._wants_client_read():
            self.client_parked = False
            client_mask = READ
        elif self.state in (CONNECT, FORWARD) and not (self.client_eof or self.client_hup):
            # Left readable until the client sends something we cannot take yet (a pipelined
            # request): parking it at once would cost two epoll_ctl calls per request.
            client_mask = RDHUP if self.client_parked else READ
        elif self.state == QUEUED:
            client_mask = RDHUP  # only to see it leave while it waits
        else:
            client_mask = 0
        if self.client_out:
            client_mask |= WRITE
        loop.set_mask(self.client_fd, client_mask)
        conn = self.conn
        if conn is not None and self.state != CONNECT:
            mask = READ if self._wants_member_read() else 0
            if self.upstream_out or (self.body_relay is not None and self.body_relay.waiting()):
                mask |= WRITE
            loop.set_mask(conn.fd, mask)

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
        self.linger_until = self.ctx.loop.now + LINGER_MAX
        self._set_deadline(LINGER_QUIET)

    def _linger(self) -> None:
        try:
            n = raw_recv_into(self.client, self.ctx.buffer)  # discarded: TLS or not
        except BlockingIOError:
            return
        except OSError:
            n = 0
        self.linger_left -= n
        left = self.linger_until - self.ctx.loop.now
        if n == 0 or self.linger_left <= 0 or left <= 0:
            return self.close()
        self._set_deadline(min(LINGER_QUIET, left))
