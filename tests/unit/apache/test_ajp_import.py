"""import-apache: ajp:// members (mod_proxy_ajp) become an AJP pool, with secret=, ping= and
iobuffersize= (or ProxyIOBufferSize) as the pool's ajp_* keys when the members agree."""

from __future__ import annotations

from tests.unit.apache.importing import forward, load, notes

TOMCATS = ("<Proxy balancer://tomcats>\n"
           "BalancerMember ajp://10.0.0.1:8009 route=node1 secret=s3cret ping=2 "
           "iobuffersize=16384\n"
           "BalancerMember ajp://10.0.0.2 route=node2 secret=s3cret ping=2 iobuffersize=16384\n"
           "ProxySet stickysession=JSESSIONID|jsessionid lbmethod=heartbeat\n"
           "</Proxy>\nProxyPass /app/ balancer://tomcats/app/\n")


def test_ajp_members_make_an_ajp_pool() -> None:
    text, config = load(TOMCATS)
    pool = config.pool("tomcats")
    assert pool.protocol == "ajp" and pool.ajp_secret == "s3cret" and pool.ajp_ping == 2
    assert pool.ajp_packet_size == 16384
    assert [str(m.address) for m in pool.members] == ["10.0.0.1:8009", "10.0.0.2:8009"]
    assert [m.route for m in pool.members] == ["node1", "node2"]
    assert pool.stickysession == "JSESSIONID|jsessionid"
    assert forward(config, "h", "/app/x") == ("tomcats", "/app/x")
    assert not any("ajp" in n or "secret" in n or "ping" in n for n in notes(text))


def test_members_that_disagree_leave_the_key_unset_and_say_so() -> None:
    text, config = load("<Proxy balancer://t>\nBalancerMember ajp://10.0.0.1 secret=a\n"
                        "BalancerMember ajp://10.0.0.2 secret=b ping=x\n</Proxy>\n"
                        "ProxyPass / balancer://t/\nProxyIOBufferSize 65536\n")
    pool = config.pool("t")
    assert pool.protocol == "ajp" and pool.ajp_secret == "" and pool.ajp_ping == 0
    assert pool.ajp_packet_size == 65536  # the server's ProxyIOBufferSize
    found = "\n".join(notes(text))
    assert "secret=***" in found and "a" not in found.split("secret=")[1][:4]
    assert "ping=unset/x" in found


def test_a_ping_on_an_http_member_is_noted_and_ajp_mixed_with_http_too() -> None:
    text, config = load("<Proxy balancer://m>\nBalancerMember http://10.0.0.1:8080 ping=1\n"
                        "BalancerMember ajp://10.0.0.2:8009\n</Proxy>\nProxyPass / balancer://m/\n")
    assert config.pool("m").protocol == "http"
    found = "\n".join(notes(text))
    assert "ping=1" in found and "ajp while the other members are not" in found


def test_ajp_members_are_checked_by_cping() -> None:
    text, config = load("<Proxy balancer://t>\nBalancerMember ajp://10.0.0.1 hcmethod=CPING\n"
                        "BalancerMember ajp://10.0.0.2 hcmethod=CPING\n</Proxy>\n"
                        "ProxyPass / balancer://t/\n")
    assert config.pool("t").hcheck.hcmethod == "cping" and notes(text) == []
    text, config = load("<Proxy balancer://t>\nBalancerMember ajp://10.0.0.1 hcmethod=GET\n"
                        "</Proxy>\nProxyPass / balancer://t/\n")
    assert config.pool("t").hcheck.hcmethod == "cping"
    assert any("checked by CPING" in n and "hcmethod=GET" in n for n in notes(text))
    text, config = load("<Proxy balancer://t>\nBalancerMember ajp://10.0.0.1 hcmethod=TCP\n"
                        "</Proxy>\nProxyPass / balancer://t/\n")
    assert config.pool("t").hcheck.hcmethod == "tcp" and notes(text) == []
