"""import-apache: mod_proxy_hcheck parameters, ProxyHCTemplate, ProxyHCExpr, failonstatus and
failontimeout -> hbfork's hc* keys and pool settings, asserted on the config hbfork loads."""

from __future__ import annotations

import pytest

from hbfork.apache.hchecks import translate_expr
from hbfork.core.hcheck import HcheckSettings
from tests.unit.apache.importing import comments, load, notes


def balancer(members: str, extra: str = "", before: str = "") -> str:
    return (f"{before}<Proxy balancer://b>\n{members}{extra}</Proxy>\n"
            "ProxyPass / balancer://b/\n")


def test_member_parameters_shared_by_every_member_become_the_pools() -> None:
    params = "hcmethod=GET hcuri=/health hcinterval=5 hcpasses=2 hcfails=3"
    text, config = load(balancer(f"BalancerMember http://10.0.0.1:8080 {params}\n"
                                 f"BalancerMember http://10.0.0.2:8080 {params}\n"))
    pool = config.pool("b")
    assert pool.hcheck == HcheckSettings(hcmethod="get", hcuri="/health", hcinterval=5,
                                         hcpasses=2, hcfails=3)
    assert all(m.hcheck is None for m in pool.members)
    assert not notes(text)


def test_members_that_differ_get_their_own_and_apaches_interval_is_written_out() -> None:
    text, config = load(balancer("BalancerMember http://10.0.0.1:8080/app hcmethod=HEAD11 "
                                 "hcuri=ping\nBalancerMember http://10.0.0.2:8080/app\n"))
    pool = config.pool("b")
    first, second = pool.members
    assert not pool.hcheck.enabled and second.hcheck is None
    # Apache appends hcuri to the member's URL path; its hcinterval defaults to 30 s.
    assert pool.check_of(first) == HcheckSettings(hcmethod="head", hcuri="/app/ping",
                                                  hcinterval=30)
    assert "Apache's (default) interval" in comments(text)


def test_templates_and_expressions() -> None:
    before = ("ProxyHCExpr ok234 {%{REQUEST_STATUS} =~ /^[234]/}\n"
              "ProxyHCExpr alive {%{REQUEST_STATUS} -lt 400 && hc('body') =~ /ALIVE/}\n"
              "ProxyHCExpr in_maint {hc('body') !~ /Under maintenance/}\n"
              "ProxyHCTemplate tcp5 hcmethod=TCP hcinterval=5\n"
              "ProxyHCTemplate web hcmethod=GET hcuri=/up hcexpr=alive\n")
    text, config = load(balancer(
        "BalancerMember http://10.0.0.1 hctemplate=tcp5\n"
        "BalancerMember http://10.0.0.2 hctemplate=tcp5 hcinterval=10\n"
        "BalancerMember http://10.0.0.3 hcmethod=HEAD hcexpr=ok234\n"
        "BalancerMember http://10.0.0.4 hctemplate=web\n"
        "BalancerMember http://10.0.0.5 hcmethod=GET hcexpr=in_maint\n"
        "BalancerMember http://10.0.0.6 hcmethod=GET hctemplate=nope hcexpr=missing\n",
        before=before))
    pool = config.pool("b")
    checks = {str(m.address): pool.check_of(m) for m in pool.members}
    assert checks["10.0.0.1:80"] == HcheckSettings(hcmethod="tcp", hcinterval=5)
    assert checks["10.0.0.2:80"].hcinterval == 10          # its own parameter wins
    assert checks["10.0.0.3:80"].hcexpect_status == tuple(range(200, 500))
    web = checks["10.0.0.4:80"]
    assert (web.hcmethod, web.hcuri, web.hcexpect_body) == ("get", "/up", "ALIVE")
    assert web.hcexpect_status == tuple(range(100, 400))
    assert checks["10.0.0.5:80"].hcexpect_status == HcheckSettings().hcexpect_status
    assert checks["10.0.0.6:80"] == HcheckSettings(hcmethod="get", hcinterval=30)
    found = "\n".join(notes(text))
    assert "ProxyHCExpr in_maint" in found and "httpd.conf:3" in found
    assert "hctemplate=nope" in found and "hcexpr=missing" in found


@pytest.mark.parametrize("expr, expected", [
    ("{%{REQUEST_STATUS} =~ /^[23]/}", {"hcexpect_status": ["200-399"]}),
    ("{%{REQUEST_STATUS} =~ /^2/}", {"hcexpect_status": ["200-299"]}),
    ("{%{REQUEST_STATUS} -eq 200}", {"hcexpect_status": ["200"]}),
    ("{%{REQUEST_STATUS} >= 200 && %{REQUEST_STATUS} < 300}", {"hcexpect_status": ["200-299"]}),
    ("{%{REQUEST_STATUS} -ne 503}", {"hcexpect_status": ["100-502", "504-599"]}),
    ("{hc('body') =~ /OK/}", {"hcexpect_body": "OK"}),
    ("{hc('body') =~ /O.K/}", None),
    ("{%{REQUEST_STATUS} =~ /5/}", None),
    ("{%{REQUEST_STATUS} -lt 400 || hc('body') =~ /x/}", None),
    ("{%{REQUEST_STATUS} -lt 100}", None),
])
def test_expressions(expr, expected) -> None:
    assert translate_expr(expr) == expected


def test_failonstatus_and_failontimeout() -> None:
    text, config = load(balancer("BalancerMember http://10.0.0.1\n",
                                 "ProxySet failonstatus=500,503 failontimeout=On\n"))
    pool = config.pool("b")
    assert pool.failonstatus == (500, 503) and "timeout" in pool.retry_on
    assert "consecutive_5xx" in comments(text) and not notes(text)
    text, _ = load(balancer("BalancerMember http://10.0.0.1\n", "ProxySet failonstatus=5xx\n"))
    assert any("failonstatus=5xx" in n for n in notes(text))


def test_an_unknown_method_is_noted() -> None:
    text, config = load(balancer("BalancerMember http://10.0.0.1 hcmethod=CPING\n"))
    assert not config.pool("b").check_of(config.pool("b").members[0]).enabled
    assert any("hcmethod=CPING" in n for n in notes(text))
