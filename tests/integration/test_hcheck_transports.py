"""Active checks over the member's own transport, with real processes: HTTP checks over TLS
to a pool with tls = true (the pool's CA, verification and server name, as its requests use),
and AJP CPING checks to an AJP pool (tests.ajp_server answers CPONG, or stays silent like a
hung container). Passive outlier detection is off, so only the checks take members out."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.ajp_server import AjpServer
from tests.certs import Authority
from tests.integration.harness import HBFORK, Process, free_port, wait_until
from tests.integration.test_tls import TlsMember

CHECKS = {"hcinterval": 0.3, "hcfails": 2, "hcpasses": 2, "hctimeout": 1.0}


@pytest.mark.parametrize(("ca_kind", "verify", "passes"), [
    ("right", True, True), ("wrong", True, False), ("wrong", False, True)])
def test_http_checks_over_tls_use_the_pools_tls_settings(cluster, tmp_path, ca_kind, verify,
                                                          passes):
    ca = Authority(tmp_path / "pki")
    other = Authority(tmp_path / "other", "another CA")
    heartbeat = free_port(kind=socket.SOCK_DGRAM)
    member = TlsMember(ca, "127.0.0.7", heartbeat)
    address = f"127.0.0.7:{member.port}"
    try:
        pool = {"name": "secure", "tls": True, "tls_verify": verify,
                "tls_ca": str((ca if ca_kind == "right" else other).path),
                "tls_server_name": "member.test", "hcmethod": "get", "hcuri": "/health",
                **CHECKS, "member": [{"address": address}]}
        proxy = cluster.proxy([], pool=[pool], route=[{"path": "/", "pool": "secure"}],
                              heartbeat={"listen": f"127.0.0.1:{heartbeat}"},
                              outlier={"enabled": False})
        if passes:
            # passed, and eligible once its heartbeat is heard too
            wait_until(lambda: (m := proxy.member(address))["check_result"] == "passed (200)"
                       and m["state"] == "eligible", 10, message="a check over TLS to pass")
        else:  # a certificate from another CA: the handshake fails, the member is out
            wait_until(lambda: proxy.member(address)["state"] == "check failed", 10,
                       message="the member out for its failed TLS handshakes")
            assert proxy.member(address)["check_result"] == "TLS handshake failed"
            assert "fails its active check (GET /health: TLS handshake failed" \
                in proxy.output()
    finally:
        member.stop()


@pytest.fixture
def ajp_member() -> Iterator[AjpServer]:
    server = AjpServer("127.0.0.2")
    yield server
    server.stop()


def test_cping_checks_take_a_silent_ajp_container_out_and_back(cluster, ajp_member):
    proxy = cluster.proxy([], pool=[{"name": "tomcat", "protocol": "ajp", "hcmethod": "cping",
                                     **CHECKS, "member": [{"address": ajp_member.address}]}],
                          route=[{"path": "/", "pool": "tomcat"}], outlier={"enabled": False})
    beat = Process([*HBFORK, "beat", "--to", proxy.heartbeat_address, "--from", ajp_member.ip,
                    "--port", str(ajp_member.port), "--ready", "10", "--interval", "0.2"],
                   cluster.tmp / "beat-ajp.log")
    cluster.processes.append(beat)
    address = ajp_member.address
    wait_until(lambda: (m := proxy.member(address))["check_result"] == "passed"
               and m["state"] == "eligible", 10, message="a CPING check to pass")
    assert ajp_member.pings >= 1
    ajp_member.answer_pings = False  # the container hangs: CPINGs time out
    wait_until(lambda: proxy.member(address)["state"] == "check failed", 10,
               message="the silent container out")
    assert proxy.member(address)["check_result"] == "timed out"
    assert "fails its active check (AJP CPING: timed out" in proxy.output()
    ajp_member.answer_pings = True
    wait_until(lambda: proxy.member(address)["state"] == "eligible", 10,
               message="the container back once it answers CPING again")
