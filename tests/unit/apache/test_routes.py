"""import-apache: ProxyPass / ProxyPassMatch / exclusions -> [[route]] (hbfork.apache.routes,
hbfork.apache.vhosts), asserted on the route table hbfork compiles from the output."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hbfork.core.routes import compile_routes, shadowed
from tests.unit.apache.importing import comments, forward, load, notes, route_of

POOLS = ("<Proxy balancer://a>\nBalancerMember http://10.0.0.1:8080\n</Proxy>\n"
         "<Proxy balancer://b>\nBalancerMember http://10.0.0.2:8080\n</Proxy>\n")
VHOSTS = POOLS + """\
ProxyPass /server-status !
<VirtualHost *:80>
  ServerName www.example.com
  ServerAlias example.com
  ProxyPass /static !
  ProxyPass / balancer://a/
</VirtualHost>
<VirtualHost *:80>
  ServerName blog.example.com
  ServerAlias *.blog.example.com
  ProxyPass /blog/ balancer://b/
</VirtualHost>
"""


# --- order


def test_a_location_is_tried_before_the_server_list() -> None:
    _, config = load(POOLS + "ProxyPass /app/ balancer://a/\n"
                     "<Location /app/admin/>\nProxyPass balancer://b/console/\n</Location>\n")
    assert forward(config, "h", "/app/admin/users") == ("b", "/console/users")
    assert forward(config, "h", "/app/other") == ("a", "/other")
    assert forward(config, "h", "/elsewhere") == (404, "")


@pytest.mark.parametrize(("first", "second", "expected"), [
    ("/app", "/app/admin", "b"),     # the later, narrower <Location> wins for its paths
    ("/app/admin", "/app", "b"),     # the later, wider one overrides the earlier everywhere
])
def test_a_later_location_overrides_an_earlier_one(first: str, second: str,
                                                   expected: str) -> None:
    text, config = load(POOLS + f"<Location {first}>\nProxyPass balancer://a\n</Location>\n"
                        f"<Location {second}>\nProxyPass balancer://b\n</Location>\n")
    assert forward(config, "h", "/app/admin/x")[0] == expected
    assert forward(config, "h", "/app/x")[0] == ("b" if second == "/app" else "a")
    if second == "/app":  # Apache merges the later <Location /app> over the earlier one
        assert any(n.startswith("# not translated: <Location /app/admin> ProxyPass") and
                   "never used: <Location /app> ProxyPass balancer://b" in n
                   for n in notes(text))


def test_the_main_servers_proxypass_comes_first_in_a_vhost() -> None:
    text, config = load(POOLS + "ProxyPass / balancer://a/\n<VirtualHost *:80>\n"
                        "ServerName v.example.com\nProxyPass /api/ balancer://b/\n"
                        "</VirtualHost>\n")
    assert forward(config, "v.example.com", "/api/x") == ("a", "/api/x")
    assert any("ProxyPass /api/ balancer://b/" in n and "never used" in n and
               "ProxyPass / balancer://a/" in n for n in notes(text))
    assert shadowed(compile_routes(config.routes)) == []


def test_exclusions_and_overlapping_prefixes_keep_file_order() -> None:
    text, config = load(POOLS + "ProxyPass /app/static !\nProxyPass /app/ balancer://a/\n"
                        "ProxyPass /apple balancer://b\nProxyPass / balancer://b/\n")
    assert forward(config, "h", "/app/static/x.css") == (404, "")
    assert forward(config, "h", "/app/x") == ("a", "/x")
    assert forward(config, "h", "/apple/pie") == ("b", "/pie")
    assert forward(config, "h", "/app") == ("b", "/app")        # /app/ does not match /app
    assert route_of(config, "h", "/app/static").passes is False
    assert "Apache serves these requests itself" in comments(text)


def test_an_exclusion_after_the_route_it_should_carve_out_never_matches() -> None:
    text, config = load(POOLS + "ProxyPass / balancer://a/\nProxyPass /static !\n")
    assert forward(config, "h", "/static/x") == ("a", "/static/x")   # as in Apache
    assert any("ProxyPass /static !" in n and "never used" in n for n in notes(text))


# --- virtual hosts


def test_each_vhost_sees_only_its_own_routes() -> None:
    _, config = load(VHOSTS)
    assert forward(config, "www.example.com", "/x") == ("a", "/x")
    assert forward(config, "EXAMPLE.com:80", "/x") == ("a", "/x")    # alias, case, port
    assert forward(config, "blog.example.com", "/blog/p") == ("b", "/p")
    assert forward(config, "x.blog.example.com", "/blog/p") == ("b", "/p")
    # a path the blog vhost does not proxy stays there (404), never reaching www's "/"
    assert forward(config, "blog.example.com", "/x") == (404, "")
    assert forward(config, "blog.example.com", "/static/x") == (404, "")
    # the main server's exclusion applies in every vhost
    assert forward(config, "blog.example.com", "/server-status") == (404, "")
    assert forward(config, "www.example.com", "/server-status") == (404, "")


def test_hosts_no_vhost_names_get_the_first_vhost() -> None:
    text, config = load(VHOSTS)
    assert forward(config, "unknown.example.net", "/x") == ("a", "/x")
    assert forward(config, "", "/static/y") == (404, "")             # HTTP/1.0, no Host
    hosted = [r.host for r in config.routes]
    assert ("www.example.com",) not in hosted       # the default vhost's routes take any host
    assert ("blog.example.com", "*.blog.example.com") in hosted
    assert "the first vhost of its address" in comments(text)


def test_a_default_vhost_whose_names_a_later_wildcard_matches_keeps_them() -> None:
    _, config = load(POOLS + "<VirtualHost *:80>\nServerName www.example.com\n"
                     "ProxyPass / balancer://a/\n</VirtualHost>\n<VirtualHost *:80>\n"
                     "ServerName example.com\nServerAlias *.example.com\n"
                     "ProxyPass / balancer://b/\n</VirtualHost>\n")
    assert forward(config, "www.example.com", "/") == ("a", "/")     # Apache: first match
    assert forward(config, "shop.example.com", "/") == ("b", "/")
    assert forward(config, "other.net", "/") == ("a", "/")


def test_a_name_an_earlier_vhost_has_is_noted() -> None:
    text, config = load(VHOSTS + "<VirtualHost *:80>\nServerName blog.example.com\n"
                        "ProxyPass / balancer://a/\n</VirtualHost>\n")
    assert forward(config, "blog.example.com", "/x") == (404, "")
    assert any("ServerName blog.example.com" in n and "already matched by blog.example.com" in n
               for n in notes(text))


def test_host_patterns_hbfork_cannot_express_are_noted() -> None:
    text, config = load(POOLS + "<VirtualHost *:80>\nServerName a.example.com\n</VirtualHost>\n"
                        "<VirtualHost *:80>\nServerName b.example.com\n"
                        "ServerAlias www*.example.com b.example.com:8080 *.b.example.com\n"
                        "ProxyPass / balancer://b/\n</VirtualHost>\n")
    assert any("ServerAlias www*.example.com" in n for n in notes(text))
    b = route_of(config, "b.example.com", "/")
    assert b is not None and b.host == ("b.example.com", "*.b.example.com")


def test_vhosts_on_ports_hbfork_does_not_listen_on_are_left_out() -> None:
    text, config = load(POOLS + "Listen 80\n<VirtualHost *:443>\nServerName s.example.com\n"
                        "ProxyPass / balancer://b/\n</VirtualHost>\n<VirtualHost *:80>\n"
                        "ProxyPass / balancer://a/\n</VirtualHost>\n")
    assert forward(config, "s.example.com", "/") == ("a", "/")
    assert any("<VirtualHost *:443>" in n and "port 443" in n for n in notes(text))


def test_a_vhost_without_servername_takes_the_main_servers() -> None:
    _, config = load(POOLS + "ServerName main.example.com\n<VirtualHost *:80>\n"
                     "ServerName first.example.com\nProxyPass / balancer://a/\n"
                     "</VirtualHost>\n<VirtualHost *:80>\nProxyPass / balancer://b/\n"
                     "</VirtualHost>\n")
    assert forward(config, "main.example.com", "/") == ("b", "/")
    assert forward(config, "first.example.com", "/") == ("a", "/")


# --- what a route does


def test_proxypassmatch_substitutes_groups_or_appends_the_path() -> None:
    _, config = load(POOLS + 'ProxyPassMatch "^/api/v[12]/(.*)$" "balancer://a/$1"\n'
                     'ProxyPassMatch "\\.csv$" "balancer://b"\n'
                     'ProxyPassMatch "^(/img/.*)$" "http://10.0.0.3:81$1"\n'
                     "ProxyPass ~ ^/old/(.*) balancer://b/new/$1\n")
    assert forward(config, "h", "/api/v2/users/7?x=1") == ("a", "/users/7?x=1")
    assert forward(config, "h", "/exports/list.csv") == ("b", "/exports/list.csv")
    assert forward(config, "h", "/img/a.png") == ("10.0.0.3-81", "/img/a.png")
    assert forward(config, "h", "/old/page") == ("b", "/new/page")
    assert route_of(config, "h", "/api/v3/x") is None


@pytest.mark.parametrize("regex", [r"^/\p{L}+$", "^/(?<name>x)", "^/[[:alpha:]]+$"])
def test_regexes_python_reads_differently_are_noted(regex: str) -> None:
    text, config = load(POOLS + f'ProxyPassMatch "{regex}" balancer://a/\n')
    assert not config.routes
    assert any("ProxyPassMatch" in n and "regular expression" in n for n in notes(text))


def test_proxypass_exclusion_by_regex() -> None:
    _, config = load(POOLS + 'ProxyPassMatch "\\.php$" !\nProxyPass / balancer://a/\n')
    assert forward(config, "h", "/x/index.php") == (404, "")
    assert forward(config, "h", "/x/index.html") == ("a", "/x/index.html")


def test_member_and_url_paths_make_the_rewrite() -> None:
    _, config = load("<Proxy balancer://t>\nBalancerMember http://10.0.0.1:8080/shop\n"
                     "BalancerMember http://10.0.0.2:8080/shop/\n</Proxy>\n"
                     "ProxyPass /store/ balancer://t/\nProxyPass /api balancer://t/v1\n"
                     "ProxyPass / http://10.0.0.9:9000/site/\n")
    assert forward(config, "h", "/store/cart") == ("t", "/shop/cart")
    assert forward(config, "h", "/api/x") == ("t", "/shop/v1/x")
    assert forward(config, "h", "/x") == ("10.0.0.9-9000", "/site/x")
    assert forward(config, "h", "/store/") == ("t", "/shop/")


@pytest.mark.parametrize(("line", "garbled"), [
    ("ProxyPass /app/ balancer://a", "balancer://ax"),
    ("ProxyPass / http://10.0.0.5:8080", "http://10.0.0.5:8080x"),
    ("ProxyPass /app/ balancer://a/x", "/xx"),
])
def test_paths_apache_itself_would_garble_are_answered_503(line: str, garbled: str) -> None:
    text, config = load(POOLS + line + "\nProxyPass / balancer://b/\n")
    assert forward(config, "h", "/app/x") == (503, "")
    assert any(line.split()[1] in n and garbled in n and "answered 503" in n
               for n in notes(text))


def test_a_slash_apache_doubles_is_kept_single() -> None:
    text, config = load(POOLS + "ProxyPass /app balancer://a/\n")
    assert forward(config, "h", "/app/x") == ("a", "/x")
    assert forward(config, "h", "/app") == ("a", "/")
    assert "Apache sends /app/x as //x (a double slash)" in comments(text)


def test_an_unknown_balancer_or_unusable_members_answer_503() -> None:
    text, config = load(POOLS + "<Proxy balancer://names>\nBalancerMember gopher://app1:70\n"
                        "</Proxy>\nProxyPass /n/ balancer://names/\n"
                        "ProxyPass /u/ balancer://nope/\nProxyPass / balancer://a/\n")
    assert forward(config, "h", "/n/x") == (503, "")
    assert forward(config, "h", "/u/x") == (503, "")
    assert forward(config, "h", "/x") == ("a", "/x")
    assert {p.name for p in config.pools} == {"a", "b"}
    found = "\n".join(notes(text))
    assert "balancer://nope has no BalancerMember (Apache answers 503 too)" in found
    assert "gopher scheme" in found
    assert "balancer://names has no member hbfork can use" in found


def test_reverse_and_cookie_maps_go_to_the_route_they_belong_to() -> None:
    text, config = load(POOLS + "ProxyPassReverseCookiePath /a/ /\n<VirtualHost *:80>\n"
                        "ProxyPass /app/ balancer://a/\nProxyPassReverse /app/ balancer://a/\n"
                        "ProxyPass /b/ http://10.0.0.2:8080/\n"
                        "ProxyPassReverse /b/ http://10.0.0.2:8080/\n"
                        "ProxyPassReverse /other/ balancer://a/\n"
                        "ProxyPassReverseCookieDomain a.internal example.com\n"
                        "</VirtualHost>\n")
    app = route_of(config, "h", "/app/x")
    assert app is not None and app.reverse
    assert app.reverse_cookie_path == (("/a/", "/"),)
    assert app.reverse_cookie_domain == (("a.internal", "example.com"),)
    member = route_of(config, "h", "/b/x")    # the member's own URL, as older configs write it
    assert member is not None and member.reverse and member.pool == "10.0.0.2-8080"
    assert [str(m.address) for m in config.static_members] == ["10.0.0.1:8080",
                                                                 "10.0.0.2:8080"]
    assert any("ProxyPassReverse /other/ balancer://a/" in n and "route that served it" in n
               for n in notes(text))


def test_reverse_in_a_location() -> None:
    _, config = load(POOLS + "<Location /app/>\nProxyPass balancer://a/\n"
                     "ProxyPassReverse balancer://a/\nProxyPassReverseCookiePath / /app/\n"
                     "</Location>\n")
    app = route_of(config, "h", "/app/x")
    assert app is not None and app.reverse and app.reverse_cookie_path == (("/", "/app/"),)


@pytest.mark.parametrize(("server", "vhost", "location", "expected"), [
    ("", "", "", False),                                   # Apache's default: Off
    ("ProxyPreserveHost On", "", "", True),                # inherited by the vhost
    ("ProxyPreserveHost On", "ProxyPreserveHost Off", "", False),
    ("", "ProxyPreserveHost On", "ProxyPreserveHost Off", False),
    ("", "", "ProxyPreserveHost On", True),
])
def test_preserve_host_as_apache_merges_it(server: str, vhost: str, location: str,
                                           expected: bool) -> None:
    text, config = load(f"{POOLS}{server}\n<VirtualHost *:80>\n{vhost}\n"
                        f"<Location /x/>\nProxyPass balancer://b/\n{location}\n</Location>\n"
                        "ProxyPass / balancer://a/\n</VirtualHost>\n")
    x = route_of(config, "h", "/x/y")
    assert x is not None and x.preserve_host is expected
    slash = route_of(config, "h", "/y")
    assert slash is not None and slash.preserve_host is (expected if not location else
                                                        "On" in vhost)
    if not expected:
        assert "preserve_host = false" in text


def test_proxypass_flags_hbfork_does_not_have_are_noted() -> None:
    text, config = load(POOLS + "ProxyPass /a/ balancer://a/ nocanon\n"
                        "ProxyPass /b/ balancer://b/ noquery mapping=servlet\n")
    assert forward(config, "h", "/a/x") == ("a", "/x")
    found = "\n".join(notes(text))
    assert "nocanon" in found and "noquery" in found and "mapping" not in found


def test_proxypass_where_hbfork_cannot_place_it_is_noted() -> None:
    text, config = load(POOLS + "<Directory /srv>\nProxyPass /d balancer://a/\n</Directory>\n"
                        "<LocationMatch ^/m>\nProxyPass balancer://a/\n</LocationMatch>\n"
                        "<Location /p>\nProxyPass /p balancer://a/\n</Location>\n"
                        "RewriteRule ^/r/(.*)$ http://10.0.0.1:8080/$1 [P,L]\n")
    assert not config.routes
    found = "\n".join(notes(text))
    assert "<Directory /srv>" in found
    assert "regular expression in a <Location>" in found
    assert "takes no path" in found
    assert "RewriteRule" in found and "[[route]]" in found


def test_without_proxypass_there_are_no_routes() -> None:
    text, config = load(POOLS)
    assert not config.routes and {p.name for p in config.pools} == {"a", "b"}
    assert "with no [[route]], hbfork sends every request to the pool 'a'" in comments(text)


# --- any routing config loads, and routes as Apache would


PATHS = st.sampled_from(["/", "/a", "/a/", "/a/b", "/b/", "/apple", "a", "//a"])
TARGETS = st.sampled_from(["!", "balancer://a/", "balancer://a", "balancer://b/x/",
                           "balancer://none/", "http://10.0.0.3:81/", "http://10.0.0.3:81",
                           "http://10.0.0.4/y", "http://name:80/", "https://10.0.0.5/"])
LINES = st.one_of(
    st.builds(lambda p, t: f"ProxyPass {p} {t}", PATHS, TARGETS),
    st.builds(lambda r, t: f'ProxyPassMatch "{r}" {t}',
              st.sampled_from(["^/r/(.*)$", "\\.css$", "(", "^/[[:alpha:]]"]), TARGETS),
    st.builds(lambda p, t: f"ProxyPassReverse {p} {t}", PATHS, TARGETS),
    st.builds(lambda a, b: f"ProxyPassReverseCookiePath {a} {b}", PATHS, PATHS),
    st.sampled_from(["ProxyPreserveHost On", "ProxyPreserveHost Off",
                     "ServerName www.example.com", "ServerName b.example.com:80",
                     "ServerAlias *.example.com x*.y", "ServerAlias a.example.com"]),
    st.builds(lambda p, t: f"<Location {p}>\nProxyPass {t}\nProxyPassReverse {t}\n</Location>",
              PATHS, TARGETS))
SERVERS = st.lists(st.tuples(st.sampled_from(["*:80", "*:443", "_default_:80"]),
                             st.lists(LINES, max_size=5)), max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINES, max_size=5), SERVERS)
def test_any_routing_config_loads_and_routes(main: list, vhosts: list) -> None:
    text = POOLS + "Listen 80\n" + "\n".join(main) + "\n" + "".join(
        f"<VirtualHost {address}>\n" + "\n".join(lines) + "\n</VirtualHost>\n"
        for address, lines in vhosts)
    _, config = load(text)
    table = compile_routes(config.routes)
    assert shadowed(table) == []   # routes that can never match were left out (and noted)
    for host in ("www.example.com", "b.example.com", "x.example.com", "other"):
        for path in ("/", "/a", "/a/b", "/b/x", "/r/1", "/x.css"):
            forward(config, host, path)


def test_an_earlier_proxypassreverse_apache_would_use_is_pointed_out() -> None:
    text, config = load(POOLS + "<VirtualHost *:80>\n<Location /admin/>\n"
                        "ProxyPass balancer://a/wp-admin/\nProxyPassReverse balancer://a/wp-admin/\n"
                        "</Location>\nProxyPass /blog/ balancer://a/\n"
                        "ProxyPassReverse /blog/ balancer://a/\n</VirtualHost>\n")
    admin = route_of(config, "h", "/admin/x")
    assert admin is not None and admin.reverse and admin.rewrite == "/wp-admin/"
    assert "in Apache, ProxyPassReverse /blog/ balancer://a/ (/etc/httpd/httpd.conf:13) comes " \
           "first among the ProxyPassReverse lines in force here" in comments(text)


def test_vhosts_of_different_ports_are_one_list() -> None:
    text, config = load(POOLS + "Listen 80\nListen 8080\n<VirtualHost *:80>\n"
                        "ServerName a.example.com\nProxyPass / balancer://a/\n</VirtualHost>\n"
                        "<VirtualHost *:8080>\nServerName b.example.com\n"
                        "ProxyPass / balancer://b/\n</VirtualHost>\n")
    assert forward(config, "b.example.com", "/") == ("b", "/")
    assert forward(config, "c.example.com", "/") == ("a", "/")
    assert "The vhosts are on *:80, *:8080: hbfork's routes do not see the address or port" \
        in comments(text)


def test_reverse_to_a_members_url_as_written() -> None:
    _, config = load("<Proxy balancer://t>\nBalancerMember https://10.0.0.1\n</Proxy>\n"
                     "<Proxy balancer://p>\nBalancerMember http://10.0.0.2\n</Proxy>\n"
                     "ProxyPass /t/ balancer://t/\nProxyPassReverse /t/ https://10.0.0.1/\n"
                     "ProxyPass /p/ balancer://p/\nProxyPassReverse /p/ http://10.0.0.2:80/\n")
    assert route_of(config, "h", "/t/x").reverse and route_of(config, "h", "/p/x").reverse
