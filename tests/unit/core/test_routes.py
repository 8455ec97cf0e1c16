"""hbfork.core.routes: first match in file order, Apache's prefix rule, hosts, rewriting."""

from __future__ import annotations

import pytest

from hbfork.core.config import loads
from hbfork.core.errors import ConfigError
from hbfork.core.routes import (
    BUCKET_FROM,
    compile_routes,
    describe,
    prefix_match,
    shadowed,
    substitute,
)

POOLS = """
[[pool]]
name = "app"
members = ["10.0.0.11:8080"]
[[pool]]
name = "api"
members = ["10.0.0.12:8080"]
[[pool]]
name = "static"
members = ["10.0.0.13:8080"]
"""


def table(routes: str):
    return compile_routes(loads(POOLS + routes).routes)


def which(t, host: str, path: str) -> str | None:
    found = t.lookup(host, path)
    if found is None:
        return None
    route, match = found
    if not route.passes:
        return f"!{route.settings.status}"
    return f"{route.pool} {route.member_path(path, match)}"


@pytest.mark.parametrize(("path", "prefix", "matches"), [
    ("/app", "/app", True), ("/app/x", "/app", True), ("/apple", "/app", False),
    ("/app", "/app/", False), ("/app/", "/app/", True), ("/app/x", "/app/", True),
    ("/", "/", True), ("/x", "/", True), ("/ap", "/app", False),
])
def test_prefix_match_is_segment_wise(path: str, prefix: str, matches: bool) -> None:
    assert prefix_match(path, prefix) is matches


def test_first_match_in_file_order_with_exclusions_first() -> None:
    t = table("""
[[route]]
path = "/app/static"
pass = false
[[route]]
path = "/app/admin"
pass = false
status = 403
[[route]]
path = "/app/"
pool = "app"
strip_prefix = true
[[route]]
path = "/app/api/"
pool = "api"
[[route]]
path = "/"
pool = "static"
""")
    assert which(t, "h", "/app/static/logo.png") == "!404"
    assert which(t, "h", "/app/admin") == "!403"
    assert which(t, "h", "/app/x/y") == "app /x/y"
    assert which(t, "h", "/app/api/v1") == "app /api/v1"   # the earlier, shorter prefix wins
    assert which(t, "h", "/app") == "static /app"          # "/app/" does not match "/app"
    assert which(t, "h", "/other") == "static /other"
    later, earlier = shadowed(t)[0]
    assert (later.index, earlier.index) == (3, 2)


def test_no_match_is_none() -> None:
    t = table('[[route]]\npath = "/app"\npool = "app"\n')
    assert which(t, "h", "/") is None
    assert which(t, "h", "/application") is None


def test_hosts_exact_wildcard_and_any() -> None:
    t = table("""
[[route]]
host = "www.example.com"
path = "/"
pool = "app"
[[route]]
host = ["*.example.com", "example.org"]
path = "/"
pool = "api"
[[route]]
host = "*.b.example.com"
path = "/"
pool = "static"
[[route]]
path = "/public"
pool = "static"
""")
    assert which(t, "www.example.com", "/x") == "app /x"
    assert which(t, "a.example.com", "/x") == "api /x"
    assert which(t, "x.b.example.com", "/x") == "api /x"  # *.example.com comes first
    assert which(t, "example.org", "/x") == "api /x"
    assert which(t, "example.com", "/x") is None          # *.example.com needs a label more
    assert which(t, "other.net", "/public/a") == "static /public/a"
    assert which(t, "other.net", "/x") is None


def test_rewrite_like_proxypass() -> None:
    t = table("""
[[route]]
path = "/app/"
pool = "app"
rewrite = "/x/"
[[route]]
path = "/api"
pool = "api"
strip_prefix = true
[[route]]
path = "/keep/"
pool = "app"
""")
    assert which(t, "h", "/app/a/b") == "app /x/a/b"
    assert which(t, "h", "/api") == "api /"
    assert which(t, "h", "/api/v1") == "api /v1"
    assert which(t, "h", "/keep/a") == "app /keep/a"


def test_rewrite_keeps_path_parameters_after_the_prefix() -> None:
    t = table('[[route]]\npath = "/app/"\npool = "app"\nrewrite = "/"\n')
    route, match = t.lookup("h", "/app/x")
    assert route.member_path("/app/x;jsessionid=A.n1", match) == "/x;jsessionid=A.n1"
    assert route.member_path("/app;v=1/x", match) == "/x"


def test_regex_routes_and_substitution() -> None:
    t = table(r"""
[[route]]
regex = '^/img/(.*\.gif)$'
pool = "static"
rewrite = "/gifs/$1"
[[route]]
regex = '\.php$'
pool = "app"
[[route]]
regex = '^/v([0-9]+)/'
pool = "api"
rewrite = "/"
""")
    assert which(t, "h", "/img/a/b.gif") == "static /gifs/a/b.gif"
    assert which(t, "h", "/x/index.php") == "app /x/index.php"
    # a template without $N: Apache appends the whole path
    assert which(t, "h", "/v2/users") == "api //v2/users"


def test_substitute_groups_ampersand_and_escapes() -> None:
    import re
    match = re.search(r"/(a)(b)?", "/ab")
    assert substitute("/$1-$2-&-\\$1", match, "/ab") == "/a-b-/ab-$1"
    assert substitute("/$9", match, "/ab") == "/"


def test_many_routes_for_one_host_are_bucketed_and_keep_their_order() -> None:
    routes = "".join(f'[[route]]\nhost = "h"\npath = "/p{n}/"\npool = "app"\n'
                     for n in range(BUCKET_FROM + 5))
    routes += '[[route]]\nhost = "h"\nregex = "^/p3/special"\npool = "api"\n'
    routes += '[[route]]\nhost = "h"\npath = "/"\npool = "static"\n'
    t = table(routes)
    assert t.exact["h"].buckets is not None
    assert which(t, "h", "/p3/x") == "app /p3/x"
    assert which(t, "h", "/p3/special") == "app /p3/special"  # /p3/ comes first
    assert which(t, "h", "/zzz") == "static /zzz"


def test_describe_prints_every_route_and_warns_about_shadowed_ones() -> None:
    t = table('[[route]]\npath = "/"\npool = "app"\n[[route]]\npath = "/api"\npool = "api"\n')
    text = "\n".join(describe(t))
    assert "#1" in text and "#2" in text and "pool api" in text
    assert "route #2 (*/api) can never match: route #1" in text


@pytest.mark.parametrize(("route", "key", "problem"), [
    ('pool = "nope"\npath = "/"', "[[route]] #1 pool", "no pool is named 'nope'"),
    ('pool = "app"', "[[route]] #1", "exactly one of path or regex"),
    ('pool = "app"\npath = "/"\nregex = "x"', "[[route]] #1", "exactly one of path or regex"),
    ('pool = "app"\nregex = "(unclosed"', "[[route]] #1 regex", "invalid regular expression"),
    ('pool = "app"\npath = "app"', "[[route]] #1 path", "must start with /"),
    ('pool = "app"\npath = "/"\nhost = "www.*.com"', "[[route]] #1 host", "whole first label"),
    ('pool = "app"\npath = "/"\nhost = "*example.com"', "[[route]] #1 host", "whole first label"),
    ('path = "/"\npass = false\npool = "app"', "[[route]] #1 pool", "nothing with pass = false"),
    ('path = "/"', "[[route]] #1 pool", "is required"),
    ('path = "/"\npool = "app"\nstrip_prefix = true\nrewrite = "/"',
     "[[route]] #1 strip_prefix", "cannot be combined"),
    ('path = "/"\npool = "app"\nstatus = 99', "[[route]] #1 status", "must be from 200"),
    ('path = "/"\npool = "app"\nfoo = 1', "[[route]] #1 foo", "unknown key"),
])
def test_route_errors_name_the_key(route: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads(POOLS + "[[route]]\n" + route + "\n", "front.toml")
    assert info.value.path == "front.toml"
    assert info.value.key == key
    assert problem in info.value.problem


def test_duplicate_route_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        loads(POOLS + '[[route]]\npath = "/a"\npool = "app"\n[[route]]\npath = "/a"\n'
                      'pool = "api"\n')
    assert info.value.key == "[[route]] #2" and "as [[route]] #1" in info.value.problem


def test_routes_need_http_mode() -> None:
    with pytest.raises(ConfigError) as info:
        loads('[proxy]\nmode = "tcp"\n' + POOLS.replace('"app"', '"default"') +
              '[[route]]\npath = "/"\npool = "default"\n')
    assert info.value.key == "[[route]]"


def test_rewrite_and_path_must_agree_on_the_trailing_slash() -> None:
    with pytest.raises(ConfigError) as info:
        loads(POOLS + '[[route]]\npath = "/app/"\npool = "app"\nrewrite = "/x"\n')
    assert info.value.key == "[[route]] #1 rewrite" and "end in /" in info.value.problem
