"""Certificates made on the spot for TLS tests (test-only: the `cryptography` package)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Issued:
    cert: Path
    key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


class Authority:
    """A test CA that issues server certificates into `directory`; with `parent`, an
    intermediate CA signed by it (its certificate in `<stem>.pem`)."""

    def __init__(self, directory: Path, name: str = "hbfork test CA",
                 parent: Authority | None = None, stem: str = "ca") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        issuer = parent.certificate.subject if parent else subject
        self.certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0 if parent else None),
                           critical=True)
            .sign(parent.key if parent else self.key, hashes.SHA256()))
        self.path = directory / f"{stem}.pem"
        self.path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def intermediate(self, stem: str, name: str) -> Authority:
        """An intermediate CA under this one, in the same directory."""
        return Authority(self.directory, name, parent=self, stem=stem)

    def issue(self, stem: str, *names: str, days: float = 90, expired: bool = False,
              ip: str | None = None) -> Issued:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        start, end = (now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)) \
            if expired else (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days))
        alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        if ip:
            import ipaddress
            alt.append(x509.IPAddress(ipaddress.ip_address(ip)))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                        names[0] if names else stem)]))
            .issuer_name(self.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end))
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(self.directory / f"{stem}.pem", self.directory / f"{stem}.key")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, issued.key)
        return issued

    def other_key(self, stem: str) -> Path:
        """A private key that matches no certificate."""
        path = self.directory / f"{stem}.key"
        _write_key(_key(), path)
        return path
