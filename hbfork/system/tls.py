"""Certificates from disk into SSL contexts: loading, checking, and choosing one by SNI.

The master builds the contexts (at start and on every reload, before anything is committed)
and the workers inherit them through fork: so every worker shares the session-ticket keys, and
a client resumes its session whichever worker it reaches. A certificate that is missing,
unreadable, expired, or whose key does not match is an error naming the file; on a reload the
old contexts keep serving.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from hbfork.core.config import Config
from hbfork.core.errors import HbforkError
from hbfork.core.tls_settings import CertificateSettings, TlsSettings

ALPN = ["http/1.1"]


@dataclass
class Certificate:
    """One [[certificate]]: its files, the names it serves, when it expires, its context."""
    cert: str
    key: str
    names: tuple[str, ...]
    not_after: float          # Unix time
    context: ssl.SSLContext
    default: bool = False


@dataclass
class TlsContexts:
    certificates: list[Certificate]
    exact: dict[str, ssl.SSLContext] = field(default_factory=dict)
    wildcard: dict[str, ssl.SSLContext] = field(default_factory=dict)  # ".example.com"
    members: dict[str, ssl.SSLContext] = field(default_factory=dict)   # pool name -> client

    @property
    def default(self) -> ssl.SSLContext | None:
        """The context connections start with; SNI may switch them to another one."""
        if not self.certificates:
            return None
        return next((c for c in self.certificates if c.default),
                    self.certificates[0]).context

    def for_name(self, name: str) -> ssl.SSLContext | None:
        name = name.lower().rstrip(".")
        found = self.exact.get(name)
        if found is None:
            dot = name.find(".")
            if dot > 0:
                found = self.wildcard.get(name[dot:])
        return found


def load_contexts(config: Config, now: float | None = None) -> TlsContexts | None:
    """The contexts of every [[certificate]] and of every pool that talks TLS to its members,
    or None when there is no TLS at all; raises HbforkError naming the file."""
    member_pools = [p for p in config.pools if p.tls]
    if not config.certificates and not member_pools:
        return None
    now = time.time() if now is None else now
    certificates = [_certificate(config, c, now) for c in config.certificates]
    contexts = TlsContexts(certificates)
    for pool in member_pools:
        contexts.members[pool.name] = client_context(config, pool.name, pool.tls_verify,
                                                     config.resolve(pool.tls_ca))
    for certificate in certificates:
        for name in certificate.names:
            target = contexts.wildcard if name.startswith("*.") else contexts.exact
            target.setdefault(name[1:] if name.startswith("*.") else name, certificate.context)
    for certificate in certificates:
        certificate.context.sni_callback = _sni(contexts)
    return contexts


def _sni(contexts: TlsContexts):
    def choose(sslobj: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        if name:
            found = contexts.for_name(name)
            if found is not None and found is not sslobj.context:
                sslobj.context = found
        return None
    return choose


def _certificate(config: Config, settings: CertificateSettings, now: float) -> Certificate:
    cert = config.resolve(settings.cert)
    key = config.resolve(settings.key) or cert
    chain = config.resolve(settings.chain)
    assert cert is not None and key is not None
    context = server_context(config.tls)
    for path in (cert, key, chain):
        if path and not os.path.exists(path):
            raise HbforkError(f"[[certificate]] {path}: no such file")
    try:
        info = ssl._ssl._test_decode_cert(cert)  # type: ignore[attr-defined]
    except (ssl.SSLError, OSError) as err:
        raise HbforkError(f"[[certificate]] {cert}: not a PEM certificate ({err})") from None
    not_after = ssl.cert_time_to_seconds(info["notAfter"])
    if not_after < now:
        raise HbforkError(f"[[certificate]] {cert}: expired on {info['notAfter']}")
    try:
        with _with_chain(cert, chain) as certfile:
            context.load_cert_chain(certfile, key)
    except ssl.SSLError as err:
        reason = "the key does not match the certificate" \
            if "mismatch" in str(err).lower() else str(err)
        raise HbforkError(f"[[certificate]] {cert} (key {key}): {reason}") from None
    except OSError as err:
        raise HbforkError(f"[[certificate]] {err.filename or key}: {err.strerror}") from None
    names = settings.names or _names_of(info)
    return Certificate(cert, key, names, not_after, context, settings.default)


@contextlib.contextmanager
def _with_chain(cert: str, chain: str | None) -> Iterator[str]:
    """load_cert_chain wants the intermediates in the certificate's file: with `chain`, a
    private temporary file holding both, removed as soon as it was read."""
    if not chain:
        yield cert
        return
    with open(cert, "rb") as first, open(chain, "rb") as second:
        data = first.read().rstrip(b"\n") + b"\n" + second.read()
    fd, path = tempfile.mkstemp(prefix="hbfork-chain-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        yield path
    finally:
        os.unlink(path)


def _names_of(info: dict) -> tuple[str, ...]:
    names = [value.lower() for kind, value in info.get("subjectAltName", ()) if kind == "DNS"]
    if not names:
        for rdn in info.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    names.append(value.lower())
    return tuple(names)


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """A server context with hbfork's protocol settings (no certificate yet)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if settings.min_version == "1.3" \
        else ssl.TLSVersion.TLSv1_2
    context.set_ciphers(settings.ciphers)
    context.set_alpn_protocols(ALPN)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if not settings.session_tickets:
        context.options |= ssl.OP_NO_TICKET
        context.num_tickets = 0
    return context


def client_context(config: Config, pool: str, verify: bool, ca: str | None) -> ssl.SSLContext:
    """The context for TLS to a pool's members."""
    if ca and not os.path.exists(ca):
        raise HbforkError(f"[[pool]] {pool!r} tls_ca {ca}: no such file")
    try:
        context = ssl.create_default_context(cafile=ca or None)
    except (ssl.SSLError, OSError) as err:
        raise HbforkError(f"[[pool]] {pool!r} tls_ca {ca}: {err}") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(ALPN)
    return context


def key_warnings(config: Config) -> list[str]:
    """Private keys that group or others may read (`hbfork check` prints these)."""
    out = []
    for settings in config.certificates:
        key = config.resolve(settings.key or settings.cert)
        try:
            mode = os.stat(key).st_mode if key else 0
        except OSError:
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            out.append(f"warning: private key {key} is readable by group or others "
                       f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it, owned by root")
    return out
