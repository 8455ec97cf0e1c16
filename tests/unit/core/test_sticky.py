"""hbfork.core.sticky: routes found where and as mod_proxy_balancer finds them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hbfork.core.sticky import find_route, route_cookie, route_of, value_in_cookie, value_in_url


@pytest.mark.parametrize(("url", "value"), [
    ("/app;jsessionid=ABC.node1", "ABC.node1"),
    ("/app;jsessionid=ABC.node1?x=1", "ABC.node1"),
    ("/app?jsessionid=ABC.node2&x=1", "ABC.node2"),
    ("/app?x=1&jsessionid=ABC.node2", "ABC.node2"),
    ("/app?jsessionid=", None),
    ("/app?jsessionidx=1&jsessionid=B.n3", "B.n3"),   # a longer name is skipped
    ("/app?jsessionid=&x=1", "x=1"),                  # strtok skips the leading '&'
    ("/app;jsessionid=A.n1/more", "A.n1/more"),       # only ? and & end it
    ("/app", None),
])
def test_value_in_url(url: str, value: str | None) -> None:
    assert value_in_url(url, "jsessionid") == value


@pytest.mark.parametrize(("cookie", "value"), [
    ("JSESSIONID=ABC.node1", "ABC.node1"),
    ("a=1; JSESSIONID=ABC.node1; b=2", "ABC.node1"),
    ("a=1,JSESSIONID=X.n2", "X.n2"),
    ("JSESSIONID =X.n2", "X.n2"),                     # spaces before '=' are skipped
    ("XJSESSIONID=bad; JSESSIONID=good.n4", "good.n4"),
    ("JSESSIONIDX=bad", None),
    ("JSESSIONID=", None),
    ("JSESSIONID=;a=1", ""),
    ("a=JSESSIONID=x.n1", None),                      # not at the start of a cookie
])
def test_value_in_cookie(cookie: str, value: str | None) -> None:
    assert value_in_cookie(cookie, "JSESSIONID") == value


@pytest.mark.parametrize(("value", "sep", "route"), [
    ("ABC.node1", ".", "node1"), ("ABC.node1.x", ".", "node1.x"), ("ABC", ".", None),
    ("ABC.", ".", None), (".n2", ".", "n2"), ("A!weblogic", "!", "weblogic"),
    ("wholevalue", "", "wholevalue"), (None, ".", None), ("", "", None),
])
def test_route_of(value: str | None, sep: str, route: str | None) -> None:
    assert route_of(value, sep) == route


def test_url_before_cookie() -> None:
    assert find_route("/a;jsessionid=x.url", ["JSESSIONID=y.cookie"], "JSESSIONID",
                      "jsessionid", ".") == "url"
    assert find_route("/a", ["JSESSIONID=y.cookie"], "JSESSIONID", "jsessionid", ".") \
        == "cookie"
    assert find_route("/a", ["other=1", "JSESSIONID=y.second"], "JSESSIONID", "jsessionid",
                      ".") == "second"
    assert find_route("/a", [], "JSESSIONID", "jsessionid", ".") is None


def test_route_cookie_reads_back() -> None:
    header = route_cookie("ROUTEID", "node2", ".", "/", True, True, "Lax")
    assert header == b"ROUTEID=.node2; Path=/; HttpOnly; Secure; SameSite=Lax"
    cookie = header.decode().split(";")[0]
    assert find_route("/", [cookie], "ROUTEID", "ROUTEID", ".") == "node2"


@given(st.text(max_size=60), st.text(max_size=60))
def test_garbage_never_raises(url: str, cookie: str) -> None:
    route = find_route(url, [cookie], "JSESSIONID", "jsessionid", ".")
    assert route is None or isinstance(route, str)
