"""When an HTTP exchange goes wrong: deadlines, and the answers the proxy gives itself.

Anything that fails before the response head reached the client is answered by the proxy: 502
(or 504 for a response timeout, 503 when no member is available, 408 when the client stalls,
4xx for malformed requests); after that, the client connection is closed, which is the only
honest signal left. A 5xx answer to a sound request keeps the connection open for the next one.
"""

from __future__ import annotations

import errno
import time

from hbfork.core import http_heads
from hbfork.core.retry import TIMEOUT
from hbfork.proxy.http.state import CLOSING, CONNECT, FORWARD, HEAD, QUEUED, ExchangeState


class Failures(ExchangeState):
    __slots__ = ()

    def _on_deadline(self) -> None:
        if self.state == QUEUED:
            self._queue_timed_out()
        elif self.state == HEAD:
            if self.inbuf:
                self._fail(408, "request head not received in time")
            else:
                self.close()  # an idle keep-alive connection: close quietly
        elif self.state == CONNECT:
            self._connect_failed(errno.ETIMEDOUT)
        elif self.state == FORWARD and self.response is None and (
                self.request_done or self.upstream_out):
            # The member has not answered, or stopped taking the request body.
            self.ctx.count_upstream_timeout()
            self._gateway_failure(TIMEOUT, 504, "the member did not answer in time")
        elif self.state == FORWARD and self.response is None:
            self._fail(408, "request body not received in time")
        else:
            self.close()  # no progress in either direction for client_timeout

    def _fail(self, status: int, detail: str,
              extra: tuple[tuple[str, str], ...] = (), sound: bool = False) -> None:
        """Answer `status` ourselves, if the client has not seen a response head yet.
        `sound`: the request itself was fine (a route keeps it out, say), so an answer below
        500 is not a client error and the connection may carry on."""
        if self.sent_to_client:
            return self.close()
        request = self.request
        self._release_member(reusable=False)
        # The connection can carry on only if the request was read whole and was sound.
        keep = ((status >= 500 or sound) and request is not None and self.request_done
                and self.keep_alive and (not self.client_eof or bool(self.inbuf))
                and not self.ctx.draining and not self.drain_requested)
        if status < 500 and not sound:
            self.ctx.count_client_error()
        head_only = request is not None and request.method == b"HEAD"
        if self.listen.hsts:  # on our own answers too, as Apache's `Header always set` does
            value = f"max-age={self.listen.hsts}" + (
                "; includeSubDomains" if self.listen.hsts_subdomains else "")
            extra = (*extra, ("Strict-Transport-Security", value))
        self._to_client(http_heads.error_response(status, detail, keep_alive=keep, extra=extra,
                                              head_only=head_only,
                                              date=http_heads.http_date(time.time())))
        self.status = status
        self.sent_to_client = True
        if not self.accounted:
            self.accounted = True
            self.ctx.request_done(self, status, None)
        if keep:
            self._reset_exchange()
            self.state = HEAD
            self._idle_deadline()
            if self.inbuf:
                self._advance()
        else:
            self.state = CLOSING  # _advance flushes the answer, then lingers
            self.inbuf.clear()
            self._set_deadline(self.ctx.http.client_timeout)
