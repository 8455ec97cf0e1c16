"""Members given by host name, with real `hbfork run` / `hbfork check` and /etc/hosts."""

from __future__ import annotations

import subprocess

from tests.integration.harness import HBFORK, free_port, spread


def test_a_member_by_host_name_gets_its_traffic(cluster):
    port = free_port("127.0.0.1")
    proxy = cluster.proxy([], pool=[{"name": "default", "members": [f"localhost:{port}"]}])
    backend = cluster.backend("named", 10, heartbeat=proxy.heartbeat_address, ip="127.0.0.1",
                              port=port)
    proxy.wait_eligible(backend.address)
    assert spread(proxy.url, 20) == {"named": 20}
    assert proxy.member(backend.address)["name"] == "localhost"


def test_a_name_that_does_not_resolve_is_a_config_error(tmp_path):
    path = tmp_path / "hb.toml"
    path.write_text('[[pool]]\nname = "default"\nmembers = ["no-such-host.invalid:80"]\n')
    result = subprocess.run([*HBFORK, "check", "-c", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    assert str(path) in result.stderr and "members #1 address" in result.stderr
    assert "no-such-host.invalid" in result.stderr and "Traceback" not in result.stderr


def test_an_optional_member_that_does_not_resolve_is_left_out(tmp_path):
    path = tmp_path / "hb.toml"
    path.write_text('[[pool]]\nname = "default"\nmembers = ["127.0.0.2:80"]\n'
                    '[[pool.member]]\naddress = "no-such-host.invalid:80"\noptional = true\n')
    result = subprocess.run([*HBFORK, "check", "-c", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "no-such-host.invalid" in result.stderr and "left out" in result.stderr
