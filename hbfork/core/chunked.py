"""Chunked bodies (RFC 9112 §7.1): ChunkedBody validates a framing as it streams past, and
tolerates what the RFC lets a recipient accept (spaces before the line end, chunk extensions,
leading zeros, upper-case hex); Rechunker forwards it in a clean framing, so a strict peer on
the other side never sees `a \r\n`, `2;` or an extension it might read differently. Pure.

Most peers already send the clean form (`<lower-case hex size, no leading zero>\r\n`): a chunk
whose size line is exactly that goes on as it came, size line, data and line end, in one copy
with its neighbours (re-framing every chunk cost a streamed response ~1.4-2x the worker CPU of
relaying it as is). Any other chunk's data goes on as one chunk `<hex size>\r\n<data>\r\n` per
run scanned, its own size line and line end dropped. Chunks are decided one at a time, at their
size line, so the two forms mix at chunk boundaries only and the output is always one valid
framing. The last chunk goes on as `0\r\n`; trailer fields (validated) and the final line end
go on as they came.
"""

from __future__ import annotations

from hbfork.core.errors import ProtocolError
from hbfork.core.grammar import CONTROL, HEX, TOKEN
from hbfork.core.http11 import CRLF

_SIZE, _DATA, _DATA_CRLF, _TRAILER, _DONE = range(5)
MAX_CHUNK_LINE = 4096


def chunk_line_end(buf: bytes | bytearray, position: int, end: int, status: int) -> int:
    """Where the chunk line at `position` ends (CRLF), -1 while incomplete; too long: error."""
    stop = position + MAX_CHUNK_LINE
    line_end = buf.find(CRLF, position, end if end < stop else stop)
    if line_end < 0 and end - position >= MAX_CHUNK_LINE:
        raise ProtocolError(status, "chunk line too long")
    return line_end


class ChunkedBody:
    """Validates chunked framing while it streams past; counts bytes, copies none.

    scan() consumes whole framing lines only, so a size line split across reads is left for
    the next call (the caller keeps unconsumed bytes). With `decode`, the data ranges are
    collected in `pieces` for a client that cannot take chunked (HTTP/1.0)."""

    __slots__ = ("decode", "limit", "pieces", "remaining", "state", "status", "total")

    def __init__(self, limit: int = 0, decode: bool = False, status: int = 400) -> None:
        self.state = _SIZE
        self.remaining = 0
        self.total = 0
        self.limit = limit
        self.decode = decode
        self.pieces: list[tuple[int, int]] = []
        self.status = status  # 400 for a client's body, 502 for a member's

    @property
    def done(self) -> bool:
        return self.state == _DONE

    def scan(self, buf: bytes | bytearray, start: int, end: int) -> int:
        position = start
        self.pieces = []
        while position < end and self.state != _DONE:
            if self.state == _DATA:
                take = end - position if end - position < self.remaining else self.remaining
                if self.decode:
                    self.pieces.append((position, position + take))
                position += take
                self.remaining -= take
                if not self.remaining:
                    self.state = _DATA_CRLF
                continue
            line_end = chunk_line_end(buf, position, end, self.status)
            if line_end < 0:
                break  # wait for the rest of the line
            line = bytes(buf[position:line_end])
            position = line_end + 2
            self._line(line)
        return position - start

    def _line(self, line: bytes) -> None:
        if self.state == _DATA_CRLF:
            if line:
                raise ProtocolError(self.status, "chunk data longer than its size")
            self.state = _SIZE
        elif self.state == _SIZE:
            size_text = line.split(b";", 1)[0].rstrip(b" \t")
            if not HEX.fullmatch(size_text) or CONTROL.search(line) or b"\r" in line:
                raise ProtocolError(self.status, "invalid chunk size")
            self._sized(int(size_text, 16))
        elif self.state == _TRAILER:
            if not line:
                self.state = _DONE
            elif (line[0] in b" \t" or not TOKEN.fullmatch(line.partition(b":")[0])
                  or b":" not in line or CONTROL.search(line)):
                raise ProtocolError(self.status, "invalid trailer field")

    def _sized(self, size: int) -> None:
        """A chunk of `size` bytes follows (0: the last chunk, trailer fields next)."""
        self.total += size
        if self.limit and self.total > self.limit:
            raise ProtocolError(413, "request body too large")
        self.remaining = size
        self.state = _DATA if size else _TRAILER


class Rechunker(ChunkedBody):
    """A ChunkedBody whose relay() forwards the body in a clean framing: give it bytes, get
    the framing appended to `out`."""

    __slots__ = ("verbatim",)

    def __init__(self, limit: int = 0, status: int = 400) -> None:
        # decode: scan() (not relay) collects the data ranges, for a leg that sends the data
        # in frames of its own (AJP)
        super().__init__(limit=limit, decode=True, status=status)
        self.verbatim = False  # the current chunk's size line was clean: it goes on as is

    def relay(self, buf: bytes | bytearray, end: int, out: bytearray) -> int:
        """Scan `buf[:end]` and append its body, in a clean framing, to `out`; the bytes
        consumed (a framing line split across reads is left for the next call). Raises
        ProtocolError (self.status) on a malformed framing; what came before the bad part has
        been appended, nothing of it."""
        position = run = 0  # buf[run:position] goes on as it came
        view = memoryview(buf)
        try:
            while position < end:
                state = self.state
                if state == _DATA:
                    left = self.remaining
                    take = end - position if end - position < left else left
                    if not self.verbatim:
                        if run < position:
                            out += view[run:position]
                        out += b"%x\r\n" % take
                        out += view[position:position + take]
                        out += CRLF
                        run = position + take
                    position += take
                    self.remaining = left - take
                    if take == left:
                        self.state = _DATA_CRLF
                    continue
                if state == _DONE:
                    break
                line_end = chunk_line_end(buf, position, end, self.status)
                if line_end < 0:
                    break  # wait for the rest of the line
                if state == _DATA_CRLF and line_end == position:
                    self.state = _SIZE  # (the usual line end: no line to parse)
                    if not self.verbatim:
                        if run < position:
                            out += view[run:position]
                        run = line_end + 2  # each re-framed run was closed already
                elif state == _SIZE:
                    line = bytes(buf[position:line_end])
                    if HEX.fullmatch(line):  # (the usual size line: no split, no search)
                        self._sized(int(line, 16))
                    else:
                        self._line(line)  # tolerated forms, or ProtocolError
                    size = self.remaining
                    self.verbatim = line == b"%x" % size
                    if not self.verbatim:
                        if run < position:
                            out += view[run:position]
                        if not size:
                            out += b"0\r\n"
                        run = line_end + 2
                else:
                    self._line(bytes(buf[position:line_end]))  # trailers: validated, as is
                position = line_end + 2
        finally:
            if run < position:
                out += view[run:position]
            view.release()  # a bytearray cannot be resized while a view of it lives
        return position
