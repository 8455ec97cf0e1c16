"""Whether a client connection carries on after a response (RFC 9112 §9.3). Pure: the one rule
both HTTP paths and the proxy's own answers follow."""

from __future__ import annotations


def client_keeps(asked: bool, client_eof: bool, buffered: bool, draining: bool) -> bool:
    """The connection stays open after this response: the request asked for it (HTTP/1.1 by
    default, HTTP/1.0 with keep-alive, not `Connection: close`), the client has not closed its
    side (or requests it sent before closing are still buffered), and the proxy is not
    draining."""
    return asked and (not client_eof or buffered) and not draining


def response_keeps(asked: bool, client_eof: bool, buffered: bool, draining: bool,
                   framed: bool, dechunked: bool, request_read: bool) -> bool:
    """client_keeps() for a member's response: its end must be known without closing (a
    Content-Length or chunked framing that the client gets as sent) and the whole request
    must have been read (else what is left of its body would be taken as the next request)."""
    return framed and not dechunked and request_read and \
        client_keeps(asked, client_eof, buffered, draining)


def own_answer_keeps(status: int, sound: bool, request_read: bool, asked: bool,
                     client_eof: bool, buffered: bool, draining: bool) -> bool:
    """client_keeps() after an answer of the proxy's own: only when the request was read whole
    and was not at fault (a 5xx is the proxy's or a member's failure; `sound`: a refusal of a
    well-formed request, a redirect or a route's status). After a 4xx for a malformed request
    nothing that follows on the connection can be trusted."""
    return (status >= 500 or sound) and request_read and \
        client_keeps(asked, client_eof, buffered, draining)
