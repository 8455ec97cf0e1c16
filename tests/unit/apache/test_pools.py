"""import-apache: balancers and single servers -> [[pool]] (hbfork.apache.pools,
hbfork.apache.members), asserted on the config hbfork loads from the output."""

from __future__ import annotations

import pytest

from tests.unit.apache.importing import comments, fake_resolve, forward, load, notes


def balancer(members: str, extra: str = "", name: str = "b") -> str:
    return (f"<Proxy balancer://{name}>\n{members}{extra}</Proxy>\n"
            f"ProxyPass / balancer://{name}/\n")


def test_status_flags_as_apache_reads_them() -> None:
    text, config = load(balancer(
        "BalancerMember http://10.0.0.1 status=+H-D\nBalancerMember http://10.0.0.2 lbset=2\n"
        "BalancerMember http://10.0.0.3 status=-D+S\nBalancerMember http://10.0.0.4 status=+R\n"
        "BalancerMember http://10.0.0.5 status=D\nBalancerMember http://10.0.0.6 status=+N\n"
        "BalancerMember http://10.0.0.7 status=+D-D\nBalancerMember http://10.0.0.8 status=+E\n"))
    members = {str(m.address): m for m in config.pool("b").members}
    assert members["10.0.0.1:80"].standby and not members["10.0.0.1:80"].disabled
    assert members["10.0.0.2:80"].lbset == 2
    assert members["10.0.0.3:80"].disabled and members["10.0.0.5:80"].disabled
    assert members["10.0.0.4:80"].standby and "hot spare" in comments(text)
    assert members["10.0.0.6:80"].drain
    assert not members["10.0.0.7:80"].disabled
    assert any("flag E" in n for n in notes(text))


def test_routes_and_lbsets_carry_over_and_loadfactor_is_a_comment() -> None:
    text, config = load(balancer(
        "BalancerMember http://10.0.0.1:8080 route=node1 loadfactor=3\n"
        "BalancerMember http://10.0.0.2:8080 route=node2 lbset=1\n"
        "BalancerMember http://10.0.0.3:8080 route=node1\n"
        "BalancerMember http://10.0.0.4:8080 lbset=100\n"))
    pool = config.pool("b")
    assert [(str(m.address), m.route, m.lbset) for m in pool.members] == [
        ("10.0.0.1:8080", "node1", 0), ("10.0.0.2:8080", "node2", 1), ("10.0.0.4:8080", "", 0)]
    assert "loadfactor=3 ignored: hbfork weighs members by their heartbeats" in comments(text)
    found = "\n".join(notes(text))
    assert "route=node1 is already another member's" in found
    assert "lbset=100" in found and "0-99" in found


@pytest.mark.parametrize("where", ["proxyset", "proxypass"])
def test_balancer_parameters_from_proxyset_or_proxypass(where: str) -> None:
    params = "stickysession=JSESSIONID|jsessionid stickysessionsep=_ nofailover=On " \
             "maxattempts=500 lbmethod=bybusyness"
    members = "BalancerMember http://10.0.0.1:8080 route=n1\n"
    if where == "proxyset":
        text, config = load(balancer(members, f"ProxySet {params}\n"))
    else:
        text, config = load(f"<Proxy balancer://b>\n{members}</Proxy>\n"
                            f"ProxyPass / balancer://b/ {params}\n")
    pool = config.pool("b")
    assert pool.stickysession == "JSESSIONID|jsessionid"
    assert pool.sticky_names == ("JSESSIONID", "jsessionid")
    assert (pool.stickysessionsep, pool.nofailover, pool.retries) == ("_", True, 100)
    assert "hbfork's limit is 100" in comments(text)
    assert "lbmethod=bybusyness: hbfork balances by the members' heartbeats" in comments(text)


def test_balancer_parameters_hbfork_does_not_have_are_noted() -> None:
    text, config = load(balancer("BalancerMember http://10.0.0.1\n",
                                 "ProxySet stickysession=A|B|C stickysessionsep=off timeout=5 "
                                 "scolonpathdelim=On growth=2 failonstatus=503\n"))
    pool = config.pool("b")
    assert (pool.stickysession, pool.stickysessionsep) == ("", "")
    assert pool.queue_timeout == 5      # the balancer's wait for a free member: the front queue
    assert pool.failonstatus == (503,)  # translated (tests/unit/apache/test_hchecks.py)
    found = "\n".join(notes(text))
    for expected in ("stickysession=A|B|C", "scolonpathdelim=On", "growth=2"):
        assert expected in found, expected


def test_member_timing_becomes_the_pools_when_every_member_agrees() -> None:
    _, config = load(balancer("BalancerMember http://10.0.0.1 retry=5 timeout=20 "
                              "connectiontimeout=500ms\nBalancerMember http://10.0.0.2 "
                              "retry=5 timeout=20 connectiontimeout=500ms\n") +
                     "Timeout 300\n")
    pool = config.pool("b")
    assert (pool.retry, pool.response_timeout, pool.connect_timeout) == (5, 20, 0.5)
    assert config.proxy.retry == 60 and config.http.response_timeout == 300


def test_disagreeing_member_timing_is_noted_and_left_server_wide() -> None:
    text, config = load(balancer("BalancerMember http://10.0.0.1 retry=5 timeout=20\n"
                                 "BalancerMember http://10.0.0.2 retry=7\n"
                                 "BalancerMember http://10.0.0.3 retry=99999 timeout=0\n"))
    pool = config.pool("b")
    assert (pool.retry, pool.response_timeout) == (None, None)
    found = "\n".join(notes(text))
    assert "retry=5/7/99999" in found and "timeout=20/unset/0" in found
    _, config = load(balancer("BalancerMember http://10.0.0.1 retry=99999\n"))
    assert config.pool("b").retry == 3600                   # hbfork's limit
    text, config = load(balancer("BalancerMember http://10.0.0.1 timeout=0\n"))
    assert config.pool("b").response_timeout is None
    assert any("timeout=0" in n and "more than 0" in n for n in notes(text))


def test_members_hbfork_cannot_use_are_noted() -> None:
    text, config = load(balancer(
        "BalancerMember http://app1.internal:8080\nBalancerMember ajp://10.0.0.3:8009\n"
        "BalancerMember http://10.0.0.4:8080 max=5 ttl=60\nBalancerMember https://10.0.0.2\n"
        "BalancerMember http://10.0.0.4:8080\nBalancerMember http://10.0.0.5:8080/x\n"
        "BalancerMember http://[fd00::6]:8080 route=" + "r" * 70 + "\n"))
    assert [str(m.address) for m in config.pool("b").members] == [
        fake_resolve("app1.internal")[0] + ":8080", "10.0.0.4:8080", "[fd00::6]:8080"]
    found = "\n".join(notes(text))
    for expected in ("https while the other members",
                     "ajp while the other members",
                     "max=5", "ttl=60", "10.0.0.4:8080 is already a member",
                     "its path /x differs", "a route is up to 64"):
        assert expected in found, expected


def test_a_member_in_two_balancers_is_one_member() -> None:
    _, config = load("<Proxy balancer://a>\nBalancerMember http://10.0.0.1:8080 route=x\n"
                     "</Proxy>\n<Proxy balancer://b>\nBalancerMember http://10.0.0.1:8080 "
                     "route=y status=+N\nBalancerMember http://10.0.0.2:8080\n</Proxy>\n"
                     "ProxyPass /a/ balancer://a/\nProxyPass /b/ balancer://b/\n")
    assert [str(m.address) for m in config.static_members] == ["10.0.0.1:8080",
                                                                "10.0.0.2:8080"]
    assert config.pool("a").members[0].route == "x"
    assert (config.pool("b").members[0].route, config.pool("b").members[0].drain) == ("y", True)


def test_a_proxypass_to_one_server_is_a_pool_of_one() -> None:
    text, config = load("ProxyPass /x/ http://10.0.0.5:8080/app/ retry=3 timeout=9\n"
                        "ProxyPass /y/ http://10.0.0.5:8080/ retry=4\n"
                        "ProxyPass / http://[fd00::5]:81/\n")
    pool = config.pool("10.0.0.5-8080")
    assert [str(m.address) for m in pool.members] == ["10.0.0.5:8080"]
    assert (pool.retry, pool.response_timeout) == (3, 9)
    assert forward(config, "h", "/x/a") == ("10.0.0.5-8080", "/app/a")
    assert forward(config, "h", "/y/a") == ("10.0.0.5-8080", "/a")
    assert forward(config, "h", "/z") == ("fd00--5-81", "/z")
    assert any("retry=4" in n and "shares that worker" in n for n in notes(text))
    assert "a pool of one member" in comments(text)


def test_pool_names_are_made_valid_and_unique() -> None:
    _, config = load("<Proxy balancer://web+app>\nBalancerMember http://10.0.0.1\n</Proxy>\n"
                     "<Proxy balancer://web-app>\nBalancerMember http://10.0.0.2\n</Proxy>\n"
                     "ProxyPass /1/ balancer://web+app/\nProxyPass /2/ balancer://Web-App/\n")
    assert [p.name for p in config.pools] == ["web-app", "web-app-2"]
    assert forward(config, "h", "/1/x") == ("web-app", "/x")
    assert forward(config, "h", "/2/x") == ("web-app-2", "/x")


def test_the_route_cookie_recipe_becomes_sticky_cookie() -> None:
    text, config = load(balancer("BalancerMember http://10.0.0.1 route=r1\n",
                                 "ProxySet stickysession=ROUTEID\n") +
                        'Header add Set-Cookie "ROUTEID=.%{BALANCER_WORKER_ROUTE}e; path=/app; '
                        'HttpOnly" env=BALANCER_ROUTE_CHANGED\n'
                        'Header add Set-Cookie "OTHER=.%{BALANCER_WORKER_ROUTE}e"\n')
    pool = config.pool("b")
    assert (pool.sticky_cookie, pool.sticky_cookie_path, pool.sticky_cookie_httponly) == \
        ("ROUTEID", "/app", True)
    assert any("OTHER=" in n and "no balancer's stickysession reads" in n for n in notes(text))


def test_balancer_member_outside_a_proxy_section() -> None:
    text, config = load("BalancerMember balancer://b http://10.0.0.1:81\n"
                        "ProxySet balancer://b lbmethod=heartbeat\n"
                        "BalancerMember http://10.0.0.2\nProxyPass / balancer://b/\n")
    assert [str(m.address) for m in config.pool("b").members] == ["10.0.0.1:81"]
    assert any("not inside <Proxy balancer://" in n for n in notes(text))


def test_lbmethod_heartbeat_with_tiers_says_apache_ignored_them() -> None:
    text, _ = load(balancer("BalancerMember http://10.0.0.1\n"
                            "BalancerMember http://10.0.0.2 status=+H\n",
                            "ProxySet lbmethod=heartbeat\n"))
    assert "Apache's lbmethod=heartbeat ignored lbset and hot standby; hbfork honours them" \
        in comments(text)


def test_more_balancers_than_hbfork_has_pools() -> None:
    used = "".join(f"<Proxy balancer://u{n}>\nBalancerMember http://10.0.1.{n}\n</Proxy>\n"
                   f"ProxyPass /u{n}/ balancer://u{n}/\n" for n in range(1, 66))
    unused = "<Proxy balancer://idle>\nBalancerMember http://10.0.2.1\n</Proxy>\n"
    text, config = load(unused + used)
    assert len(config.pools) == 64 and "idle" not in {p.name for p in config.pools}
    assert forward(config, "h", "/u1/x") == ("u1", "/x")
    assert forward(config, "h", "/u64/x") == ("u64", "/x")
    assert forward(config, "h", "/u65/x") == (503, "")
    found = "\n".join(notes(text))
    assert "at most 64 pools: 'idle' is left out" in found and "'u65' is left out" in found


def test_https_members_make_a_tls_pool_checked_as_mod_ssl_was_told() -> None:
    text, config = load("SSLProxyEngine On\nProxyPass /one/ https://10.0.0.3:9443/x/\n" +
                        balancer("BalancerMember https://10.0.0.1\n"
                                 "BalancerMember https://10.0.0.2:8443\n"))
    pool = config.pool("b")
    assert [str(m.address) for m in pool.members] == ["10.0.0.1:443", "10.0.0.2:8443"]
    assert (pool.tls, pool.tls_verify) == (True, False)     # Apache's SSLProxyVerify none
    assert "the members' certificates were not checked" in comments(text)
    one = config.pool("10.0.0.3-9443")
    assert one.tls and forward(config, "h", "/one/a") == ("10.0.0.3-9443", "/x/a")
    text, config = load(balancer("BalancerMember https://10.0.0.1\n") +
                        "SSLProxyVerify require\nSSLProxyCACertificateFile ca/members.pem\n")
    pool = config.pool("b")
    assert (pool.tls, pool.tls_verify, pool.tls_ca) == (True, True, "/etc/httpd/ca/members.pem")


def test_websocket_and_named_members_are_translated() -> None:
    """ws:// and wss:// members are HTTP members (hbfork tunnels WebSockets over HTTP pools);
    a host name stays a name, resolved when hbfork reads the file."""
    text, config = load(balancer("BalancerMember ws://10.0.0.7:8080\n"
                                 "BalancerMember ws://chat.internal:8080\n"))
    assert [str(m.address) for m in config.pool("b").members] == [
        "10.0.0.7:8080", fake_resolve("chat.internal")[0] + ":8080"]
    assert 'address = "chat.internal:8080"' in text
    assert not any("scheme" in note for note in notes(text))
