"""One response's spool file (hbfork.core.spool): a temporary file with no name, so nothing is
left behind whatever happens to the worker — O_TMPFILE where the file system has it, else a
file unlinked the moment it is opened. Bytes are appended at `write_at` and given to the client
from `read_at`; when the client has taken them all the file is emptied (truncated) and its
bytes given back to the worker's budget. A failed write (a full disk) keeps the bytes it could
not write in `tail`, after the file's, and the file takes nothing more.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import tempfile
import time

from hbfork.core.spool import LagWindow, SpoolBudget
from hbfork.proxy.loop import Timer

log = logging.getLogger("hbfork.proxy")

BUDGET = SpoolBudget()  # this worker's (a process each): the bytes its spool files hold
_WARN_EVERY = 60.0
_warned = [0.0]


def _warn(directory: str, err: OSError) -> None:
    """Once a minute at most: a spool that cannot be opened or written is back-pressure."""
    now = time.monotonic()
    if now - _warned[0] >= _WARN_EVERY:
        _warned[0] = now
        log.warning("response spool in %s: %s (the member is held back instead)",
                    directory or tempfile.gettempdir(), err.strerror or err)


def open_nameless(directory: str) -> int:
    """A read-write file in `directory` (the system's temporary directory when "") that no name
    leads to; raises OSError."""
    where = directory or tempfile.gettempdir()
    flags = os.O_RDWR | os.O_CLOEXEC
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if tmpfile:
        try:
            return os.open(where, flags | tmpfile, 0o600)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    fd, name = tempfile.mkstemp(prefix="hbfork-spool-", dir=where)
    os.unlink(name)
    return fd


class Lag(LagWindow):
    """An exchange's LagWindow, with the timer that looks again at a client that reads nothing
    (no event would: its member is held back, its socket full)."""

    __slots__ = ("timer",)

    def __init__(self, timer: Timer) -> None:
        super().__init__()
        self.timer = timer


class SpoolFile:
    __slots__ = ("broken", "directory", "fd", "read_at", "tail", "write_at", "written")

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.fd = -1          # opened at the first write
        self.read_at = 0      # the next byte the client gets
        self.write_at = 0     # the file's size
        self.written = 0      # every byte this response put in it (its cap counts these)
        self.broken = False   # it takes nothing more (open or write failed)
        self.tail = bytearray()  # bytes a failed write left, after the file's

    @property
    def pending(self) -> int:
        """Bytes in it not yet given to the client."""
        return self.write_at - self.read_at + len(self.tail)

    @property
    def in_file(self) -> int:
        """Of those, the ones in the file (sendfile can give them); `tail`'s come after."""
        return self.write_at - self.read_at

    def opened(self) -> bool:
        """Open its file if it is not yet: False (and it takes nothing) if it cannot be."""
        if self.fd < 0 and not self.broken:
            try:
                self.fd = open_nameless(self.directory)
            except OSError as err:
                _warn(self.directory, err)
                self.broken = True
        return self.fd >= 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append `data`, all of it: what the file does not take waits in `tail`."""
        if self.broken or self.fd < 0:
            self.broken = True
            self.tail += data
            return
        done = 0
        try:
            while done < len(data):
                done += os.pwrite(self.fd, data[done:], self.write_at + done)
        except OSError as err:
            _warn(self.directory, err)
            self.broken = True
            self.tail += data[done:]
        self.write_at += done
        self.written += done
        BUDGET.take(done)

    def read(self, n: int) -> bytes:
        """Up to `n` of its next bytes, taken."""
        if self.read_at < self.write_at:
            try:
                data = os.pread(self.fd, min(n, self.write_at - self.read_at), self.read_at)
            except OSError as err:  # an I/O error on our own file: the response is lost
                raise ConnectionError(err.errno, "response spool unreadable") from err
            if not data:
                raise ConnectionError(errno.EIO, "response spool shorter than written")
            self.read_at += len(data)
            self._emptied()
            return data
        data = bytes(self.tail[:n])
        del self.tail[:n]
        return data

    def sendfile(self, sock: socket.socket) -> int:
        """Send what the socket takes of the file's bytes (not `tail`'s); raises OSError when
        the client is gone."""
        count = self.write_at - self.read_at
        if count <= 0:
            return 0
        try:
            sent = os.sendfile(sock.fileno(), self.fd, self.read_at, count)
        except BlockingIOError:
            return 0
        self.read_at += sent
        self._emptied()
        return sent

    def _emptied(self) -> None:
        """All the file's bytes were given: empty it, give its bytes back to the budget."""
        if self.read_at < self.write_at:
            return
        BUDGET.give(self.write_at)
        self.read_at = self.write_at = 0
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            self.broken = True

    def close(self) -> int:
        """The response is over (or the client gone): the file and its bytes go. Says how
        many of them the client never got."""
        unsent = self.pending
        BUDGET.give(self.write_at)
        self.read_at = self.write_at = 0
        self.tail.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        return unsent
