"""hbfork.core.uri: one normal form for matching and forwarding, and the bypass tricks it stops."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hbfork.core.errors import ProtocolError
from hbfork.core.uri import match_form, normalize_host, normalize_path, parse_target


@pytest.mark.parametrize(("raw", "path", "match", "query"), [
    ("/", "/", "/", ""),
    ("/app/x?a=1&b", "/app/x", "/app/x", "?a=1&b"),
    ("/a/./b/../c", "/a/c", "/a/c", ""),
    ("/a/b/..", "/a/", "/a/", ""),
    ("/a/b/.", "/a/b/", "/a/b/", ""),
    ("/../../etc", "/etc", "/etc", ""),
    ("//app///x", "/app/x", "/app/x", ""),
    ("/%41pp/%7euser", "/App/~user", "/App/~user", ""),
    ("/a%2e%2e/x", "/a../x", "/a../x", ""),          # not a dot segment: a name
    ("/app/%2e%2e/admin", "/admin", "/admin", ""),
    ("/app/%2E%2E/admin", "/admin", "/admin", ""),
    ("/app/.%2e/admin", "/admin", "/admin", ""),
    ("/x%20y/%c3%a9", "/x%20y/%C3%A9", "/x%20y/%C3%A9", ""),
    ("/app;jsessionid=AB.n1", "/app;jsessionid=AB.n1", "/app", ""),
    ("/admin;x/secret", "/admin;x/secret", "/admin/secret", ""),
    ("/;/admin", "/;/admin", "/admin", ""),
    ("/app/x?q=/../y", "/app/x", "/app/x", "?q=/../y"),
])
def test_normal_and_match_forms(raw: str, path: str, match: str, query: str) -> None:
    target = parse_target(raw.encode())
    assert (target.path, target.match, target.query, target.authority) == \
        (path, match, query, None)


@pytest.mark.parametrize(("raw", "status"), [
    ("/a%2fb", 404), ("/a%2Fb", 404), ("/a%00b", 400), ("/a%zz", 400), ("/a%", 400),
    ("/a/..;x/b", 400), ("/a/.;x/b", 400), ("/a#frag", 400), ("ftp://x/y", 400),
    ("x/y", 400), ("http://user@host/", 400), ("http:///x", 400),
])
def test_refused_targets(raw: str, status: int) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_target(raw.encode())
    assert info.value.status == status


def test_absolute_form() -> None:
    target = parse_target(b"http://Example.COM:8080/a/../b?x")
    assert (target.authority, target.path, target.query) == ("Example.COM:8080", "/b", "?x")
    assert parse_target(b"https://h").path == "/"
    assert parse_target(b"http://h?q").query == "?q"


def test_asterisk_is_kept() -> None:
    assert parse_target(b"*").path == "*"


@pytest.mark.parametrize(("host", "normal"), [
    ("WWW.Example.com", "www.example.com"), ("www.example.com.", "www.example.com"),
    ("www.example.com:8080", "www.example.com"), ("www.example.com.:80", "www.example.com"),
    ("[::1]:8080", "[::1]"), ("10.0.0.1:80", "10.0.0.1"),
])
def test_normalize_host(host: str, normal: str) -> None:
    assert normalize_host(host) == normal


@given(st.text(alphabet="/.;%2eEfFa-z0", max_size=30))
def test_normal_form_is_stable(raw: str) -> None:
    """Normalising twice changes nothing, and a normal path never holds a dot segment or an
    empty one: what routes see is what the member gets."""
    path = "/" + raw
    try:
        once = normalize_path(path)
    except ProtocolError:
        return
    assert normalize_path(once) == once
    segments = once.split("/")[1:-1]
    assert "." not in segments and ".." not in segments and "" not in segments
    assert "//" not in match_form(once)
