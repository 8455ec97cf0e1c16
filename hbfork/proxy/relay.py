"""One direction of a byte relay between two non-blocking sockets: zero-copy through a kernel
pipe (Linux splice(2)) for bulk transfers, recv_into + send otherwise.

Back-pressure is the caller's rule and is kept exactly: the source is read only when nothing
read from it before is still waiting for the sink (`waiting()` is False), so at most one read's
worth is held per direction, in the pipe (at most its capacity, in kernel pages, not in the
worker's heap) or in `pending`.

A direction starts by copying, and moves to splice once one read has brought SPLICE_AFTER
bytes (the source had that much ready: a bulk transfer): small exchanges (HTTP requests and
responses through TCP mode, however many a connection carries) never pay for a pipe (two
descriptors and the syscalls to make and close them), a large body stops going through Python
buffers after its first read. When splice is unavailable (not Linux) or the kernel refuses
it for these descriptors (EINVAL and friends), the direction falls back to copying for good;
bytes already in the pipe are read back out into `pending` first, so nothing is lost or
reordered.

A TLS socket on either end (a TLS listener in TCP mode: hbfork terminates, then relays plain
bytes) means copying only: splice would move ciphertext. Its reads may find a partial record
(SSLWantReadError: nothing yet, like EAGAIN) and its writes follow OpenSSL's retry rule, kept by
a TlsWriter (hbfork.proxy.tls).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket

from hbfork.proxy.tls import WOULD_BLOCK, TlsWriter

SPLICE_AFTER = 64 * 1024
# The pipe a direction splices through. Measured with 1 MiB responses over keep-alive: a 64 or
# 256 KiB pipe gave 0.7x the throughput of copying, a 1 MiB pipe the same throughput as
# copying at 0.6x the worker's CPU (scripts/bench-tcp). So a direction that cannot get this
# size (over /proc/sys/fs/pipe-max-size, or the user's pipe quota is used up by other
# connections' pipes) copies instead. Pipe pages are kernel memory, not the worker's heap: a
# stalled direction holds at most this much.
PIPE_SIZE = 1024 * 1024
_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
# What splice(2) answers for descriptors it cannot move between: give up splicing, not the
# connection.
_UNSUPPORTED = frozenset((errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP,
                          errno.EBADF))


def splice_available() -> bool:
    return hasattr(os, "splice") and _FLAGS != 0


class Direction:
    """Bytes read from one socket on their way to the other."""

    __slots__ = ("bulk", "eof", "in_pipe", "pending", "pipe_r", "pipe_w", "shut", "splice",
                 "total", "writer")

    def __init__(self, splice: bool | None = None, tls_sink: bool = False) -> None:
        self.pending: bytes | memoryview = b""  # copied out of the source, not yet written
        self.in_pipe = 0       # bytes in the kernel pipe, not yet written
        self.pipe_r = self.pipe_w = -1
        self.bulk = False      # a read brought SPLICE_AFTER bytes: splice from now on
        self.splice = splice_available() if splice is None else splice
        self.eof = False       # the source will send no more
        self.shut = False      # the sink has been shut down for writing
        self.total = 0         # bytes read from the source (the TCP-mode access log's)
        # The sink is a TLS socket: writes go through its retry rule.
        self.writer = TlsWriter() if tls_sink else None

    def waiting(self) -> bool:
        """Something read is not written yet (the source must not be read meanwhile)."""
        return self.in_pipe > 0 or bool(self.pending)

    def idle_copy(self) -> bool:
        """Nothing waits, the source has not ended and this direction copies (it is not
        splicing and is not due to start): a read may be written at once."""
        return (not self.pending and not self.in_pipe and not self.eof and self.pipe_w < 0
                and not (self.splice and self.bulk))

    @property
    def spliced(self) -> bool:
        """This direction moves bytes through its kernel pipe now."""
        return self.pipe_w >= 0

    # --- reading (the caller has checked that nothing is waiting)

    def read(self, source: socket.socket, sink: socket.socket, buffer: memoryview,
             limit: int = PIPE_SIZE) -> int:
        """Read what `source` has, at most `limit` bytes (an HTTP body's rest: the bytes after
        it belong to the next request), and write as much of it to `sink` as it takes now.
        Returns the bytes read: 0 at EOF (`eof` is set), -1 when there was nothing."""
        if self.pipe_w < 0 and self.splice and self.bulk:
            self._open_pipe()
        n = self._splice_in(source, sink, limit) if self.pipe_w >= 0 else -2
        if n == -2:  # not splicing (or the kernel just refused it): copy
            n = self._copy_in(source, sink, buffer[:limit] if limit < len(buffer) else buffer)
        if n == 0:
            self.eof = True
        elif n >= SPLICE_AFTER:
            self.bulk = True
        return n

    def _copy_in(self, source: socket.socket, sink: socket.socket, buffer: memoryview) -> int:
        try:
            n = source.recv_into(buffer)
        except WOULD_BLOCK:  # BlockingIOError, or a TLS source holding a partial record
            return -1
        if n:
            sent = self._send(sink, buffer[:n])
            if sent < n:
                self.pending = bytes(buffer[sent:n])
        return n

    def _send(self, sink: socket.socket, data: bytes | memoryview) -> int:
        """What `sink` took of `data` now (0 when it would block)."""
        try:
            if self.writer is not None:
                return self.writer.send(sink, data)
            return sink.send(data)
        except BlockingIOError:
            return 0

    def _splice_in(self, source: socket.socket, sink: socket.socket, limit: int) -> int:
        try:
            n = os.splice(source.fileno(), self.pipe_w, min(limit, PIPE_SIZE), flags=_FLAGS)
        except BlockingIOError:
            return -1
        except OSError as err:
            if err.errno not in _UNSUPPORTED:
                raise
            self._stop_splicing()  # the pipe is empty: nothing to rescue
            return -2
        if n:
            self.in_pipe = n
            self._splice_out(sink)
        return n

    # --- writing

    def flush(self, sink: socket.socket) -> None:
        """`sink` is writable: write what is waiting for it."""
        if self.in_pipe:
            self._splice_out(sink)
        elif self.pending:
            sent = self._send(sink, self.pending)
            # A view, so a slow sink taking a large remainder bit by bit is not O(n^2) copies.
            self.pending = memoryview(self.pending)[sent:] if sent < len(self.pending) else b""

    def _splice_out(self, sink: socket.socket) -> None:
        try:
            sent = os.splice(self.pipe_r, sink.fileno(), self.in_pipe, flags=_FLAGS)
        except BlockingIOError:
            return
        except OSError as err:
            if err.errno not in _UNSUPPORTED:
                raise
            self.pending = self._drain_pipe()
            self._stop_splicing()
            return self.flush(sink)
        self.in_pipe -= sent

    # --- the pipe

    def _open_pipe(self) -> None:
        try:
            self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self.splice = False  # out of descriptors: copying works without any
            return
        try:
            size = fcntl.fcntl(self.pipe_w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except (OSError, AttributeError):
            size = 0
        if size < PIPE_SIZE:
            self._stop_splicing()  # a smaller pipe is slower than copying (see PIPE_SIZE)

    def _drain_pipe(self) -> bytes:
        """The bytes still in the pipe (it is ours alone, so exactly `in_pipe` of them)."""
        parts = []
        while self.in_pipe:
            try:
                data = os.read(self.pipe_r, self.in_pipe)
            except BlockingIOError:
                break
            if not data:
                break
            parts.append(data)
            self.in_pipe -= len(data)
        self.in_pipe = 0
        return b"".join(parts)

    def _stop_splicing(self) -> None:
        self.splice = False
        self.close()

    def close(self) -> None:
        """Release the pipe (the sockets are the session's)."""
        for fd in (self.pipe_r, self.pipe_w):
            if fd >= 0:
                os.close(fd)
        self.pipe_r = self.pipe_w = -1
