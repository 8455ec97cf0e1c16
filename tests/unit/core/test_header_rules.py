"""hbfork.core.header_rules: mod_headers' actions by table, and rules refused at load."""

from __future__ import annotations

import pytest

from hbfork.core.header_rules import apply, parse_rule, parse_rules


def fields(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes, bytes]]:
    return [(n.encode(), n.lower().encode(), v.encode()) for n, v in pairs]


def run(rule: str, *pairs, response=True, own=False):
    out = apply(parse_rules([rule], response), fields(*pairs), own_answer=own)
    return [(n.decode(), v.decode()) for n, _, v in out]


@pytest.mark.parametrize(("rule", "before", "after"), [
    ("set X-Frame-Options DENY", [("X-Frame-Options", "SAMEORIGIN"), ("X-Frame-Options", "x")],
     [("X-Frame-Options", "DENY")]),
    ("unset Server", [("Server", "Apache"), ("A", "1")], [("A", "1")]),
    ("add Link </a>", [("Link", "</b>")], [("Link", "</b>"), ("Link", "</a>")]),
    ("append Cache-Control no-store", [("Cache-Control", "private")],
     [("Cache-Control", "private, no-store")]),
    ("append Cache-Control no-store", [], [("Cache-Control", "no-store")]),
    ("merge Vary Accept", [("Vary", "Origin, Accept")], [("Vary", "Origin, Accept")]),
    ("merge Vary Accept", [("Vary", "Origin")], [("Vary", "Origin, Accept")]),
    ("setifempty X-Env prod", [("X-Env", "dev")], [("X-Env", "dev")]),
    ("setifempty X-Env prod", [], [("X-Env", "prod")]),
    ("edit Location ^http: https:", [("Location", "http://a/http:")],
     [("Location", "https://a/http:")]),
    ("edit* Set-Cookie ;\\s*HttpOnly ''", [("Set-Cookie", "a=1; HttpOnly; HttpOnly")],
     [("Set-Cookie", "a=1")]),
    ('set X-Note "two words"', [], [("X-Note", "two words")]),
])
def test_actions(rule, before, after):
    assert run(rule, *before) == after


def test_only_always_rules_touch_the_proxys_own_answers():
    assert run("set X-A 1", own=True) == []
    assert run("always set X-A 1", own=True) == [("X-A", "1")]
    assert run("always set X-A 1") == [("X-A", "1")]  # and members' responses too


@pytest.mark.parametrize(("rule", "problem"), [
    ("frob X-A 1", "expected one of"), ("set", "header name"), ("set X:A 1", "header name"),
    ("set X-A", "takes 1 value"), ("unset X-A 1", "takes 0 value"),
    ("set X-A 'a\r\nInjected: 1'", "CR, LF"), ("edit X-A ( b", "does not compile"),
    ("set X-A 1 env=HTTPS", "conditions"), ("set X-A 'unclosed", "No closing quotation"),
])
def test_refused_at_load(rule, problem):
    with pytest.raises(ValueError, match=problem):
        parse_rule(rule, response=True)


def test_always_is_for_responses():
    with pytest.raises(ValueError, match="response rules"):
        parse_rule("always set X-A 1", response=False)


@pytest.mark.parametrize(("rule", "before", "after"), [
    # Apache's replacement syntax: $N groups, & the whole match, \$ and \& themselves
    ("edit Location ^http://([^/]+)/ https://$1/", [("Location", "http://a.example/x")],
     [("Location", "https://a.example/x")]),
    ("edit X-A b [&]", [("X-A", "abc")], [("X-A", "a[b]c")]),
    (r"edit X-A b \$\&", [("X-A", "abc")], [("X-A", "a$&c")]),
    (r"edit X-A b \d", [("X-A", "abc")], [("X-A", r"a\dc")]),
    ("set X-Pct 100%%", [], [("X-Pct", "100%")]),
    ("onsuccess unset X-A", [("X-A", "1")], []),
    ("edit X-A x y", [("X-B", "x")], [("X-B", "x")]),  # no such field: nothing
    # Apache's tables: the first field of the name, in place
    ("merge Vary Accept", [("Vary", "Origin"), ("Vary", "Accept")],
     [("Vary", "Origin, Accept"), ("Vary", "Accept")]),
    ("merge Vary Accept", [("Vary", "Origin,Accept")], [("Vary", "Origin,Accept")]),
    ("merge Vary accept", [("Vary", "Accept")], [("Vary", "Accept, accept")]),  # exact
    ("append X-A 2", [("X-A", "1"), ("B", "b"), ("X-A", "3")],
     [("X-A", "1, 2"), ("B", "b"), ("X-A", "3")]),
    ("set X-A 9", [("B", "b"), ("X-A", "1"), ("C", "c"), ("X-A", "3")],
     [("B", "b"), ("X-A", "9"), ("C", "c")]),
    ("unset X-A", [], []), ("edit X-A a b", [], []),
])
def test_apache_details(rule, before, after):
    assert run(rule, *before) == after


@pytest.mark.parametrize(("rule", "problem"), [
    ("set Content-Length 5", "proxy's own field"), ("unset Connection", "proxy's own field"),
    ("set X-Forwarded-Proto https", "proxy's own field"), ("unset Host", "proxy's own field"),
    ("set X-Time %t", "format specifiers"), ("set X-Env %{HOME}e", "format specifiers"),
    ("edit X-A (a) $2", "names no group"), ("early set X-A 1", "early"),
    ("echo ^X-", "not supported"), ("note X-A n", "not supported"), ("", "empty"),
    ("set X-A 1 expr=%{HTTPS}", "conditions"),
])
def test_more_refused_at_load(rule, problem):
    with pytest.raises(ValueError, match=problem):
        parse_rule(rule, response=True)


@pytest.mark.parametrize(("section", "key", "value", "problem"), [
    ("[http]", "request_headers", '["set X-A \\"a\\r\\nB: 1\\""]', "CR, LF or NUL"),
    ("[[pool]]\nname = \"default\"\nmembers = [\"127.0.0.1:9\"]", "response_headers",
     '["edit X-A ( b"]', "does not compile"),
    ("[[listen]]\naddress = \"127.0.0.1:8080\"", "request_headers", '["always set X-A 1"]',
     "response rules"),
    ("[[route]]\npath = \"/\"\npool = \"default\"", "response_headers", '"set X:Y 1"',
     "header name"),
    ("[http]", "response_headers", "[1]", "a list of rules"),
])
def test_a_bad_rule_is_a_config_error_naming_file_and_key(section, key, value, problem):
    from hbfork.core.config import loads
    from hbfork.core.errors import ConfigError
    text = "[[member]]\naddress = \"127.0.0.1:9\"\n" if "[[pool]]" not in section else ""
    with pytest.raises(ConfigError, match=problem) as caught:
        loads(text + f"{section}\n{key} = {value}\n", path="front.toml")
    assert "front.toml" in str(caught.value) and key in str(caught.value)
