"""Chunked bodies re-framed when forwarded: the framing a peer sent is validated (by
hbfork.core.http11.ChunkedBody's rules, which tolerate what RFC 9112 lets a recipient accept:
spaces before the line end, chunk extensions, leading zeros, upper-case hex) and what goes on
is a clean framing, so a strict peer on the other side never sees `a \\r\\n`, `2;` or an
extension it might read differently.

Most peers already send the clean form (`<lower-case hex size, no leading zero>\\r\\n`): a chunk
whose size line is exactly that goes on as it came, size line, data and line end, in one copy
with its neighbours (re-framing every chunk cost a streamed response ~1.4-2x the worker CPU of
relaying it as is). Any other chunk's data goes on as one chunk `<hex size>\\r\\n<data>\\r\\n` per
run scanned, its own size line and line end dropped. Chunks are decided one at a time, at their
size line, so the two forms mix at chunk boundaries only and the output is always one valid
framing. The last chunk goes on as `0\\r\\n`; trailer fields (validated) and the final line end
go on as they came.
"""

from __future__ import annotations

from hbfork.core.errors import ProtocolError
from hbfork.core.grammar import HEX
from hbfork.core.http11 import CRLF, MAX_CHUNK_LINE, ChunkedBody

# ChunkedBody's states (http11's _SIZE, _DATA, _DATA_CRLF, _TRAILER, _DONE).
_SIZE, _DATA, _DATA_CRLF, _TRAILER, _DONE = range(5)


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
                line_end = buf.find(CRLF, position, end if end < position + MAX_CHUNK_LINE
                                    else position + MAX_CHUNK_LINE)
                if line_end < 0:
                    if end - position >= MAX_CHUNK_LINE:
                        raise ProtocolError(self.status, "chunk line too long")
                    break  # wait for the rest of the line
                if state == _DATA_CRLF and line_end == position:
                    self.state = _SIZE  # (the usual line end: no line to parse)
                    if not self.verbatim:
                        if run < position:
                            out += view[run:position]
                        run = line_end + 2  # each re-framed run was closed already
                elif state == _SIZE:
                    line = bytes(buf[position:line_end])
                    if HEX.fullmatch(line):  # (the usual size line: parsed here, cheaper)
                        size = int(line, 16)
                        self.total += size
                        if self.limit and self.total > self.limit:
                            raise ProtocolError(413, "request body too large")
                        self.remaining = size
                        self.state = _DATA if size else _TRAILER
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
