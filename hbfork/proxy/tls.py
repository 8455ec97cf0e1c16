"""TLS at the front: the non-blocking handshake of each accepted connection, inside the worker's
event loop, and the reading and writing of a TLS client socket for the sessions.

A connection accepted on a TLS listener is wrapped (its SSLContext chosen again by SNI) and
handed to a Handshake. SSLWantReadError / SSLWantWriteError decide what the loop waits for; a
client that has not finished within `handshake_timeout` is closed, so a stalled handshake never
holds the worker. Once done, the session (HTTP or TCP) takes the SSLSocket over.

Writing through OpenSSL has one rule the plain path does not: after SSLWantWriteError the same
bytes must be offered again. TlsWriter keeps the size of the chunk in progress, and sessions
never change the start of their output buffer while a chunk waits.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

from hbfork.core.client_address import Origin
from hbfork.core.tls_settings import ListenSettings
from hbfork.proxy.loop import ERROR, READ, WRITE, Loop
from hbfork.table.worker_record import WorkerRecord

TLS_CHUNK = 16 * 1024   # one TLS record: the most one send() offers
PLAIN_HTTP_ANSWER = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: 41\r\nConnection: close\r\n\r\n"
                     b"400 Bad Request: this port speaks HTTPS\r\n")
WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)

# Called with the finished Handshake (its sock, client_ip and listen): the session it becomes
OnReady = Callable[["Handshake"], None]
# Called with a Handshake that closed without finishing: the worker forgets it
OnClosed = Callable[["Handshake"], None]


class Handshake:
    __slots__ = ("client_ip", "closed", "fd", "listen", "loop", "on_closed", "on_ready", "origin",
                 "record", "sock", "timer")

    def __init__(self, loop: Loop, record: WorkerRecord, sock: ssl.SSLSocket, client_ip: str,
                 listen: ListenSettings, timeout: float, on_ready: OnReady,
                 origin: Origin | None = None, on_closed: OnClosed | None = None) -> None:
        self.loop = loop
        self.record = record
        self.sock = sock
        self.fd = sock.fileno()
        self.client_ip = client_ip
        self.origin = origin  # what a PROXY header said (None: the socket's own addresses)
        self.listen = listen
        self.on_ready = on_ready
        self.on_closed = on_closed
        self.closed = False
        self.timer = loop.timer(self._on_deadline)
        loop.add(self.fd, READ, self._on_event)
        loop.set_timer(self.timer, loop.now + timeout)
        self._step()

    def _on_event(self, mask: int) -> None:
        if mask & ERROR and not mask & (READ | WRITE):
            return self._fail("closed")
        self._step()

    def _step(self) -> None:
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.loop.set_mask(self.fd, READ)
            return
        except ssl.SSLWantWriteError:
            self.loop.set_mask(self.fd, WRITE)
            return
        except ssl.SSLError as err:
            return self._fail(_reason(err))
        except OSError:
            return self._fail("closed")
        self._count("resumed" if self.sock.session_reused else "ok")
        self.closed = True
        self.loop.cancel(self.timer)
        self.loop.remove(self.fd)  # the session registers it again, with its own handler
        self.on_ready(self)

    def _on_deadline(self, now: float) -> None:
        self._fail("timeout")

    def _fail(self, reason: str) -> None:
        self._count(reason)
        if reason == "plain_http":
            # OpenSSL saw "GET ..." where a ClientHello belongs: say so in plain text.
            try:
                socket.socket.send(self.sock, PLAIN_HTTP_ANSWER)
            except OSError:
                pass
        self.close()

    def _count(self, result: str) -> None:
        self.record.count_tls(result)

    def drain(self) -> None:
        """Graceful stop: a handshake in progress may finish (or time out)."""

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.cancel(self.timer)
            self.loop.remove(self.fd)
            self.sock.close()
            if self.on_closed is not None:
                # A failed handshake must leave the worker's connection set: it counts against
                # max_connections and a graceful stop waits for the set to empty.
                self.on_closed(self)


def _reason(err: ssl.SSLError) -> str:
    text = f"{err.reason or ''} {err}".upper()
    if "HTTP_REQUEST" in text:
        return "plain_http"  # plain HTTP sent to the TLS port
    if "VERSION" in text or "PROTOCOL" in text:
        return "protocol_version"
    if "NO_SHARED_CIPHER" in text or "NO SHARED CIPHER" in text:
        return "no_shared_cipher"
    if "EOF" in text or "UNEXPECTED_EOF" in text:
        return "closed"
    return "other"


def wrap(context: ssl.SSLContext, sock: socket.socket) -> ssl.SSLSocket:
    """A server-side TLS socket around an accepted connection; the handshake comes later."""
    return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False,
                               suppress_ragged_eofs=True)


class TlsWriter:
    """send() for a TLS socket with OpenSSL's retry rule (see the module docstring)."""

    __slots__ = ("chunk",)

    def __init__(self) -> None:
        self.chunk = 0  # bytes of a write in progress (offered again until taken)

    def send(self, sock: socket.socket, data: bytes | bytearray | memoryview) -> int:
        """Bytes of `data` written (0 when the socket would block). `sock` is an ssl.SSLSocket;
        typed as the socket.socket the connections hold it as (only send() is used)."""
        chunk = self.chunk or min(len(data), TLS_CHUNK)
        with memoryview(data) as view:
            try:
                sent = sock.send(view[:chunk])
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                self.chunk = chunk
                return 0
        self.chunk = 0
        return sent


def peek(sock: socket.socket) -> bytes:
    """MSG_PEEK on the connection itself (TLS sockets refuse flags on recv)."""
    return socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)


def raw_recv_into(sock: socket.socket, buffer: memoryview) -> int:
    """Bytes read past TLS (to discard what a client still sends while lingering)."""
    return socket.socket.recv_into(sock, buffer)
