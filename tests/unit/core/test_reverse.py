"""hbfork.core.reverse: member URLs in responses mapped back to the route (ProxyPassReverse)."""

from __future__ import annotations

import pytest

from hbfork.core.addresses import parse_endpoint
from hbfork.core.reverse import build_map, map_location, map_set_cookie

MEMBERS = [parse_endpoint("10.0.0.11:8080"), parse_endpoint("10.0.0.12:80")]


@pytest.mark.parametrize(("value", "mapped"), [
    ("http://10.0.0.11:8080/login", "http://www.example.com/app/login"),
    ("HTTP://10.0.0.11:8080/login?x=1", "http://www.example.com/app/login?x=1"),
    ("http://10.0.0.12/x", "http://www.example.com/app/x"),
    ("http://10.0.0.12:80/x", "http://www.example.com/app/x"),
    ("http://10.0.0.11:8080", "http://www.example.com/app/"),
    ("http://10.0.0.11:80801/x", "http://10.0.0.11:80801/x"),  # another port
    ("http://10.0.0.13:8080/x", "http://10.0.0.13:8080/x"),    # not a member
    ("/relative", "/relative"),
])
def test_location_strip_prefix_route(value: str, mapped: str) -> None:
    rmap = build_map(MEMBERS, "/", "/app/")
    assert map_location(value, rmap, "http", "www.example.com") == mapped


def test_member_side_prefix_must_match() -> None:
    rmap = build_map(MEMBERS, "/x/", "/app/")
    assert map_location("http://10.0.0.11:8080/x/a", rmap, "https", "h:8443") == \
        "https://h:8443/app/a"
    assert map_location("http://10.0.0.11:8080/y/a", rmap, "http", "h") == \
        "http://10.0.0.11:8080/y/a"


def test_unchanged_paths() -> None:
    rmap = build_map(MEMBERS, "/app/", "/app/")
    assert map_location("http://10.0.0.11:8080/app/a", rmap, "http", "h") == "http://h/app/a"


def test_cookie_path_and_domain() -> None:
    rmap = build_map([], "/", "/", cookie_paths=(("/", "/app/"),),
                     cookie_domains=(("backend.local", "www.example.com"),))
    assert map_set_cookie("JSESSIONID=A.n1; Path=/; HttpOnly", rmap) == \
        "JSESSIONID=A.n1; Path=/app/; HttpOnly"
    assert map_set_cookie("a=1; domain=BACKEND.local; path=/x", rmap) == \
        "a=1; domain=www.example.com; path=/app/"
    assert map_set_cookie("a=1; Path=/x", build_map([], "/", "/")) == "a=1; Path=/x"
