"""mod_heartbeat datagrams: parse, encode, sign and verify. Pure: bytes in, a result out.

Parsing follows mod_heartmonitor (httpd 2.4) where that is safe, and is stricter where Apache's
atoi() would coerce garbage:

* at most 1000 bytes are read (MAX_DATAGRAM); Apache treats the payload as a C string, so
  everything after a NUL byte is ignored;
* split on `&`, empty tokens skipped; each token split at the first `=`, a token without `=`
  has the value "1"; key and value are %xx-decoded (`+` stays `+`; an invalid escape keeps its
  `%`; a decoded NUL ends the string, as in C); keys compare case-insensitively (apr_table);
  the last duplicate wins; unknown keys are ignored (the format may grow);
* `v`, `ready` and `busy` must all be present; the value of `v` is not checked;
* ready and busy must be plain decimal integers in [0, 2^31-1] and port in [1, 65535];
  anything else rejects the whole datagram (Apache's atoi would turn "12abc" into 12).

Signed heartbeats (hbfork's extension, off by default) end in `&ts=SECONDS&sig=HEX`, where HEX is
HMAC-SHA256 over every byte before `&sig=`, and ts is Unix time (a decimal fraction allowed).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from hbfork.core.errors import HeartbeatError

MAX_DATAGRAM = 1000
INT32_MAX = 2**31 - 1
SIG_MARK = b"&sig="

_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_TIMESTAMP = re.compile(rb"\d{1,12}(?:\.\d{1,9})?")
_HEX64 = re.compile(rb"[0-9a-f]{64}")

# Stable reason codes, used as counter labels (hbfork_heartbeats_total{result=...}).
REJECT_REASONS = (
    "malformed",      # required key missing
    "bad_number",     # ready/busy not a plain integer in range
    "bad_port",       # port not in 1..65535
    "bad_signature",  # signature present but wrong, or sig not last
    "unsigned",       # signature required but absent
    "stale",          # ts outside the accepted window
    "replay",         # ts not newer than the last accepted one
)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    ready: int
    busy: int
    port: int | None = None
    ts: float | None = None
    signature: bytes | None = None  # lower-case hex, as sent
    signed_part: bytes = b""        # the bytes the signature covers

    @property
    def signed(self) -> bool:
        return self.signature is not None


def _unescape(raw: bytes) -> bytes:
    if b"%" in raw:
        raw = _ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), raw)
    nul = raw.find(b"\0")
    return raw if nul < 0 else raw[:nul]


def parse_fields(data: bytes) -> dict[bytes, bytes]:
    """The key/value table Apache's qs_to_table() would build (keys lower-cased)."""
    data = data[:MAX_DATAGRAM]
    nul = data.find(b"\0")
    if nul >= 0:
        data = data[:nul]
    table: dict[bytes, bytes] = {}
    for token in data.split(b"&"):
        if not token:
            continue
        key, sep, value = token.partition(b"=")
        table[_unescape(key).lower()] = _unescape(value) if sep else b"1"
    return table


def _number(value: bytes, key: str, low: int, high: int, reason: str) -> int:
    if not value.isdigit() or len(value) > 10 or not low <= int(value) <= high:
        shown = value[:20].decode("latin-1")
        raise HeartbeatError(reason, f"{key}={shown!r} is not an integer in [{low}, {high}]")
    return int(value)


def parse(data: bytes) -> Heartbeat:
    """Parse one datagram; raises HeartbeatError (with a reason code) for anything unusable."""
    table = parse_fields(data)
    missing = [key for key in (b"v", b"ready", b"busy") if key not in table]
    if missing:
        names = ", ".join(k.decode() for k in missing)
        raise HeartbeatError("malformed", f"missing {names}")
    ready = _number(table[b"ready"], "ready", 0, INT32_MAX, "bad_number")
    busy = _number(table[b"busy"], "busy", 0, INT32_MAX, "bad_number")
    port = None
    if b"port" in table:
        port = _number(table[b"port"], "port", 1, 65535, "bad_port")
    if b"sig" not in table:
        return Heartbeat(ready, busy, port)
    return _signed(data, table, ready, busy, port)


def _signed(data: bytes, table: dict[bytes, bytes], ready: int, busy: int,
            port: int | None) -> Heartbeat:
    data = data[:MAX_DATAGRAM].split(b"\0", 1)[0]
    cut = data.rfind(SIG_MARK)
    signature = data[cut + len(SIG_MARK):] if cut >= 0 else b""
    if cut < 0 or not _HEX64.fullmatch(signature):
        raise HeartbeatError("bad_signature", "sig must be the last field, 64 hex digits")
    ts_raw = table.get(b"ts", b"")
    if not _TIMESTAMP.fullmatch(ts_raw):
        raise HeartbeatError("bad_signature", "a signed heartbeat needs ts=UNIX_SECONDS")
    return Heartbeat(ready, busy, port, float(ts_raw), signature, data[:cut])


def encode(ready: int, busy: int, port: int | None = None) -> bytes:
    """The datagram mod_heartbeat sends, plus `port=` when given."""
    payload = b"v=1&ready=%d&busy=%d" % (ready, busy)
    return payload + (b"&port=%d" % port if port is not None else b"")


def sign(payload: bytes, key: bytes, ts: float) -> bytes:
    """Append `&ts=...&sig=...` to an encoded heartbeat."""
    body = payload + b"&ts=" + f"{ts:.6f}".encode()
    return body + SIG_MARK + hmac.new(key, body, hashlib.sha256).hexdigest().encode()


def verify(heartbeat: Heartbeat, keys: tuple[bytes, ...], now: float, window: float,
           last_ts: float | None) -> None:
    """Check a signed heartbeat; raises HeartbeatError. `now` is Unix time, `last_ts` the newest
    ts accepted from the same member (None if none yet)."""
    if heartbeat.signature is None or heartbeat.ts is None:
        raise HeartbeatError("unsigned", "a signature is required")
    good = False
    for key in keys:
        expected = hmac.new(key, heartbeat.signed_part, hashlib.sha256).hexdigest().encode()
        # Compare against every key so the time taken does not reveal which one matched.
        good |= hmac.compare_digest(expected, heartbeat.signature)
    if not good:
        raise HeartbeatError("bad_signature", "HMAC does not match")
    if abs(now - heartbeat.ts) > window:
        raise HeartbeatError("stale", f"ts is {now - heartbeat.ts:+.1f}s from this clock")
    if last_ts is not None and heartbeat.ts <= last_ts:
        raise HeartbeatError("replay", "ts is not newer than the last accepted one")
