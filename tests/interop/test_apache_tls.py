"""A real Apache TLS front against hbfork running what `hbfork import-apache` made of it.

tests/data/apache/tls-front.conf runs as it is in a real Apache on the lab's front
(10.213.0.1:80 and :443): two names by SNI (www.example.com with its intermediate CA in
SSLCertificateChainFile, api.example.com with a certificate file that holds it), HSTS, port 80
redirecting to https (mod_alias for www, mod_rewrite for every other name), TLS 1.0 and 1.1
refused. Its translation runs in hbfork on the front's loopback (127.0.0.1, same ports; only
listen addresses, workers, user and log files are changed for the lab). The certificates come
from a test CA made for the module (tests/certs.py), the members are three `hbfork backend`s
beating to the lab's multicast group (hbfork needs the heartbeats; Apache balances by
requests).

Both fronts are asked the same things, from inside the front's namespace, with openssl
s_client (the certificate chain served per SNI name, without one and for an unknown one, and
which TLS versions are accepted) and curl (the backend's answer over https through each
front, the HSTS header, the redirects' status and Location), and must answer the same.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from labkit import APACHE_DATA, GROUP, Hbfork, Launcher, patch, unprivileged_user, wait_for

from hbfork.core import config as config_module
from hbfork.core.members import ELIGIBLE
from tests.certs import Authority, Issued

pytestmark = [pytest.mark.netns, pytest.mark.apache]

APACHE, HBFORK = "10.213.0.1", "127.0.0.1"   # the front's lab address, and its loopback
WWW = {"10.213.0.11:8081", "10.213.0.12:8081"}
API = {"10.213.0.13:8081"}
HSTS = "max-age=63072000; includeSubDomains"
CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


@dataclass
class Lab:
    launcher: Launcher
    hbfork: Hbfork
    ca: Path
    www: Issued
    api: Issued
    intermediate: x509.Certificate

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """A command inside the front's namespace (no test traffic leaves the lab)."""
        return self.launcher.lab.run("front", list(argv), capture_output=True, text=True,
                                     timeout=20)


def make_certificates(root: Path) -> tuple[Path, Issued, Issued, x509.Certificate]:
    """A root CA, an intermediate under it, and the two names' certificates from it, where
    the config expects them (certs/ under its ServerRoot)."""
    certs = root / "certs"
    ca = Authority(root / "ca")
    intermediate = ca.intermediate("intermediate", "hbfork test intermediate")
    www = intermediate.issue("www", "www.example.com")
    api = intermediate.issue("api", "api.example.com")
    certs.mkdir(parents=True)
    for issued, stem in ((www, "www"), (api, "api")):
        (certs / f"{stem}.key").write_bytes(issued.key.read_bytes())
        (certs / f"{stem}.key").chmod(0o600)
    (certs / "www.pem").write_bytes(www.cert.read_bytes())
    (certs / "intermediate.pem").write_bytes(intermediate.path.read_bytes())
    (certs / "api-fullchain.pem").write_bytes(api.cert.read_bytes()
                                              + intermediate.path.read_bytes())
    for path in (root, certs, root / "ca"):
        path.chmod(0o755)
    return ca.path, Issued(certs / "www.pem", certs / "www.key"), \
        Issued(certs / "api-fullchain.pem", certs / "api.key"), intermediate.certificate


@pytest.fixture(scope="module")
def fronts(apache: None, module_launcher: Launcher, workdir: Path) -> Lab:
    lab = module_launcher.lab
    for address in sorted(WWW | API):
        host = next(h.name for h in lab.backends if h.address == address.split(":")[0])
        module_launcher.process(host, f"backend-{host}", [
            sys.executable, "-m", "hbfork", "backend", "--listen", address, "--heartbeat",
            GROUP, "--capacity", "8"])
    root = workdir / "tls-root"
    ca, www, api, intermediate = make_certificates(root)
    user, group = unprivileged_user() or ("nobody", "nogroup")
    variables = {"HB_ADDR": APACHE, "HB_ROOT": str(root), "HB_USER": user,
                 "HB_GROUP_NAME": group}
    front = module_launcher.apache("front", "apache-tls", APACHE_DATA / "tls-front.conf",
                                   **variables)
    done = subprocess.run([sys.executable, "-m", "hbfork", "import-apache",
                           str(APACHE_DATA / "tls-front.conf")], capture_output=True, text=True,
                          env={**os.environ, **variables, "HB_DIR": str(front.dir)},
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "0 directive(s) not translated" in done.stderr, done.stdout
    hbfork = module_launcher.hbfork("front", "hbfork-tls", lambda d: lab_config(done.stdout, d))
    wait_for(lambda: all(r.reason == ELIGIBLE for a, r in hbfork.members().items()
                         if a in WWW | API) and len(hbfork.members()) == 3, 10,
             lambda: f"members not eligible: {hbfork.members()}\n{hbfork.output()}")
    return Lab(module_launcher, hbfork, ca, www, api, intermediate)


def lab_config(text: str, directory: Path) -> str:
    """The translation with what the lab needs changed: hbfork's listeners on the front's
    loopback, one worker, as root (the lab's files are root's), logs and pid file here."""
    assert text.count(f'address = "{APACHE}:') == 2, text
    text = text.replace(f'address = "{APACHE}:', f'address = "{HBFORK}:')
    text = patch(text, "proxy", {"workers": 1, "user": None, "group": None,
                                 "allow_root": True, "shutdown_timeout": 2,
                                 "pidfile": str(directory / "hbfork.pid")})
    text = patch(text, "heartbeat", {"listen": GROUP})
    text = patch(text, "status", {"listen": ""})
    text = patch(text, "log", {"level": "info", "error": str(directory / "hbfork.log")})
    config_module.loads(text)  # fail here, not in a log, if the patch broke it
    return text


# --- what the handshake shows


def served_chain(lab: Lab, front: str, *options: str) -> list[x509.Certificate]:
    """The certificates a front sends (leaf first), checked against the test CA."""
    done = lab.run("openssl", "s_client", "-connect", f"{front}:443", "-showcerts",
                   "-CAfile", str(lab.ca), "-verify_return_error", *options)
    assert done.returncode == 0, (front, options, done.stdout[-2000:], done.stderr[-2000:])
    assert "Verify return code: 0 (ok)" in done.stdout, (front, options, done.stdout)
    return [x509.load_pem_x509_certificate(m.encode()) for m in CERT.findall(done.stdout)]


def leaf(chain: list[x509.Certificate]) -> tuple[str, int]:
    return chain[0].subject.rfc4514_string(), chain[0].serial_number


def handshake(lab: Lab, front: str, version: str) -> subprocess.CompletedProcess[str]:
    # SECLEVEL=0 lets this OpenSSL offer TLS 1.0/1.1 at all: a refusal is then the server's.
    return lab.run("openssl", "s_client", "-connect", f"{front}:443", "-servername",
                   "www.example.com", f"-{version}", "-cipher", "DEFAULT@SECLEVEL=0")


def test_certificates_by_sni_and_protocol_versions(fronts: Lab) -> None:
    www = x509.load_pem_x509_certificate(fronts.www.cert.read_bytes())
    api = x509.load_pem_x509_certificate(fronts.api.cert.read_bytes())   # leaf of the full file
    www_leaf = (www.subject.rfc4514_string(), www.serial_number)
    api_leaf = (api.subject.rfc4514_string(), api.serial_number)
    for front in (APACHE, HBFORK):
        cases = {"www.example.com": ["-servername", "www.example.com",
                                     "-verify_hostname", "www.example.com"],
                 "api.example.com": ["-servername", "api.example.com",
                                     "-verify_hostname", "api.example.com"],
                 "none": ["-noservername"],                      # the default certificate
                 "unknown": ["-servername", "other.example.net"]}
        chains = {name: served_chain(fronts, front, *options) for name, options in cases.items()}
        assert {name: leaf(chain) for name, chain in chains.items()} == {
            "www.example.com": www_leaf, "api.example.com": api_leaf, "none": www_leaf,
            "unknown": www_leaf}, front
        # the intermediate goes with both: from SSLCertificateChainFile and from the file
        assert all(len(chain) == 2 and chain[1] == fronts.intermediate
                   for chain in chains.values()), front
        # SSLProtocol all -SSLv3 -TLSv1 -TLSv1.1: refused by the server (its alert), while
        # the same client gets TLS 1.2 and 1.3
        for version in ("tls1", "tls1_1"):
            refused = handshake(fronts, front, version)
            assert refused.returncode != 0, (front, version, refused.stdout)
            assert "alert protocol version" in refused.stdout + refused.stderr, \
                (front, version, refused.stdout, refused.stderr)
        for version, name in (("tls1_2", "TLSv1.2"), ("tls1_3", "TLSv1.3")):
            accepted = handshake(fronts, front, version)
            # printed once the handshake is done (the SSL-Session block may come later or,
            # with TLS 1.3, not at all if s_client quits before the session ticket)
            assert accepted.returncode == 0 and \
                re.search(rf"^New, {re.escape(name)}, Cipher is ", accepted.stdout, re.M), \
                (front, version, accepted.stdout[-1500:], accepted.stderr)


# --- what HTTP shows


def curl(lab: Lab, *argv: str) -> tuple[int, dict[str, str], str]:
    """(status, headers with lower-cased names, body) of one request."""
    done = lab.run("curl", "-sS", "-i", "--max-time", "10", *argv)
    assert done.returncode == 0, (argv, done.stderr)
    head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
    status_line, *lines = head.splitlines()
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return int(status_line.split()[1]), headers, body


def https(lab: Lab, front: str, name: str, target: str) -> tuple[int, dict[str, str], str]:
    return curl(lab, "--cacert", str(lab.ca), "--resolve", f"{name}:443:{front}",
                f"https://{name}{target}")


def test_answers_over_https_hsts_and_redirects(fronts: Lab) -> None:
    answers = {}
    for front in (APACHE, HBFORK):
        got = {}
        for name, pool in (("www.example.com", WWW), ("api.example.com", API)):
            status, headers, body = https(fronts, front, name, "/a/b?headers=1")
            assert status == 200 and headers["x-backend"] in pool, (front, name, headers)
            assert headers["strict-transport-security"] == HSTS, (front, name, headers)
            head = json.loads(body)["head"].split("\r\n")
            received = {k.strip().lower(): v.strip() for k, _, v in
                        (h.partition(":") for h in head[1:] if h)}
            # the path the member got, and its own address as Host (ProxyPreserveHost Off)
            got[name] = (head[0].split(" ")[1], received["host"] == headers["x-backend"])
            got[f"{name} proto"] = received.get("x-forwarded-proto")
        for host in ("www.example.com", "api.example.com", "other.example.net"):
            status, headers, _ = curl(fronts, "-H", f"Host: {host}",
                                      f"http://{front}/a/b%20c?q=1&r=2")
            got[f"redirect {host}"] = (status, headers.get("location"),
                                       headers.get("strict-transport-security"))
        answers[front] = got
    apache, hbfork = answers[APACHE], answers[HBFORK]
    assert apache["www.example.com"] == ("/a/b?headers=1", True)
    for host in ("www.example.com", "api.example.com", "other.example.net"):
        # 301 to the same host and target over https; no HSTS over plain HTTP
        assert apache[f"redirect {host}"] == (301, f"https://{host}/a/b%20c?q=1&r=2", None)
    # Difference (docs/apache.md): hbfork tells members how the client came; Apache does not.
    assert (apache["www.example.com proto"], hbfork["www.example.com proto"]) == (None,
                                                                                  "https")
    for key in ("www.example.com proto", "api.example.com proto"):
        apache.pop(key), hbfork.pop(key)
    assert hbfork == apache
