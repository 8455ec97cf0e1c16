"""Chunked bodies re-framed when forwarded: the framing a peer sent is validated (by
hbfork.core.http11.ChunkedBody, which tolerates what RFC 9112 lets a recipient accept: spaces
before the line end, chunk extensions) and the data goes on in a clean framing of our own, so
a strict peer on the other side never sees `a \\r\\n`, `2;` or an extension it might read
differently. Each run of data scanned becomes one chunk `<hex size>\\r\\n<data>\\r\\n`; the last
chunk and the trailer fields (already validated) end it as `0\\r\\n<fields>\\r\\n`.
"""

from __future__ import annotations

from hbfork.core.http11 import ChunkedBody

_TRAILER_STATE = 3  # ChunkedBody's state while it reads trailer fields (http11's _TRAILER)


class Rechunker(ChunkedBody):
    """A ChunkedBody whose scan() output is re-framed by relay(): give it bytes, get the
    normalized framing appended to `out`."""

    __slots__ = ("ended", "trailers")

    def __init__(self, limit: int = 0, status: int = 400) -> None:
        super().__init__(limit=limit, decode=True, status=status)
        self.trailers: list[bytes] = []
        self.ended = False  # the last chunk and trailers went to `out`

    def _line(self, line: bytes) -> None:
        in_trailer = self.state == _TRAILER_STATE
        super()._line(line)
        if in_trailer and line:
            self.trailers.append(line)

    def relay(self, buf: bytes | bytearray, end: int, out: bytearray) -> int:
        """Scan `buf[:end]` and append its data, re-framed, to `out`; the bytes consumed (a
        framing line split across reads is left for the next call). Raises ProtocolError
        (self.status) on a malformed framing, before anything of the bad part is appended."""
        taken = self.scan(buf, 0, end)
        view = memoryview(buf)
        try:
            for start, stop in self.pieces:
                out += b"%x\r\n" % (stop - start)
                out += view[start:stop]
                out += b"\r\n"
        finally:
            view.release()  # a bytearray cannot be resized while a view of it lives
        if self.done and not self.ended:
            self.ended = True
            out += b"0\r\n"
            for field in self.trailers:
                out += field + b"\r\n"
            out += b"\r\n"
        return taken
