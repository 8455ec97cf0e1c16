"""What hbfork's router does with an imported config where the lab once found hbfork's runtime
short of the Apache front it replaces (fixed in hbfork.core.reverse, not worked around by the
importer): a redirect to the webapp's root without its slash, and https:// member URLs of a
TLS pool, both mapped back as Apache's ProxyPassReverse maps them."""

from __future__ import annotations

from hbfork.core.http11 import Limits, parse_request_head
from hbfork.core.reverse import map_location
from hbfork.proxy.http.router import Router
from tests.unit.apache.importing import DATA, load, translate_file
from tests.unit.proxy.fakes import FakePicker

SHOP = "shop.example.com"
ENV = {"HB_DIR": "/srv/lab/front", "HB_ADDR": "10.213.0.1", "HB_USER": "www-data",
       "HB_GROUP_NAME": "www-data"}


def location_seen(member_location: str, target: str = "/cart") -> str:
    """The Location a client of the imported Tomcat front gets when a member sends
    `member_location` in its answer to GET `target`."""
    _, config = translate_file(DATA / "tomcat-cluster.conf", env=ENV)
    router = Router(config, FakePicker([], config))  # type: ignore[arg-type]
    request = parse_request_head(f"GET {target} HTTP/1.1\r\nHost: {SHOP}\r\n\r\n".encode(),
                                 Limits())
    decision = router.decide(request)
    assert decision.reverse is not None
    return map_location(member_location, decision.reverse, "http", SHOP)


def test_a_member_url_under_the_webapp_maps_back() -> None:
    assert location_seen("http://10.213.0.12:8080/shop/home") == f"http://{SHOP}/home"
    assert location_seen("http://10.213.0.12:8080/shop/") == f"http://{SHOP}/"


def test_a_redirect_to_the_webapps_root_maps_back() -> None:
    assert location_seen("http://10.213.0.12:8080/shop") == f"http://{SHOP}/"


def test_a_tls_members_location_maps_back() -> None:
    _, config = load("<Proxy balancer://b>\nBalancerMember https://10.0.0.1:8443\n</Proxy>\n"
                     "ProxyPass /app/ balancer://b/\nProxyPassReverse /app/ balancer://b/\n")
    router = Router(config, FakePicker([], config))  # type: ignore[arg-type]
    request = parse_request_head(b"GET /app/x HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
                                 Limits())
    decision = router.decide(request)
    assert config.pool("b").tls and decision.reverse is not None
    assert map_location("https://10.0.0.1:8443/login", decision.reverse, "http",
                        "www.example.com") == "http://www.example.com/app/login"
