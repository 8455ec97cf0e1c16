"""hbfork.apache_conf: Apache syntax, argument values, variables and conditions (no files)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hbfork.apache import conf as ac

# --- lines, words, sections


def test_continuations_and_comments() -> None:
    text = "# comment\n\nListen \\\n  80\n  # indented comment \\\nHidden by the comment\nA b\n"
    assert list(ac.logical_lines(text)) == [(3, "Listen   80"), (7, "A b")]


def test_a_trailing_backslash_at_the_end_of_the_file() -> None:
    assert list(ac.logical_lines("Listen 80 \\")) == [(1, "Listen 80")]


@pytest.mark.parametrize(("text", "words"), [
    ('a "b c" d', ["a", "b c", "d"]),
    ("'x y' z", ["x y", "z"]),
    (r'"say \"hi\"" next', ['say "hi"', "next"]),
    ('"unterminated value', ["unterminated value"]),
    ("  spaced\tout  ", ["spaced", "out"]),
    ('""', [""]),
])
def test_split_args(text: str, words: list[str]) -> None:
    assert ac.split_args(text) == words


def test_sections_nest_and_names_are_case_insensitive() -> None:
    tree = ac.parse("<virtualhost *:80>\n<PROXY balancer://x>\nbalancermember http://1.2.3.4\n"
                    "</proxy>\n</VirtualHost>\n", "f")
    (vhost,) = tree
    assert vhost.key == "virtualhost" and vhost.args == ("*:80",)
    (proxy,) = vhost.children
    assert proxy.key == "proxy" and proxy.line == 2
    assert proxy.children[0].key == "balancermember"
    assert proxy.children[0].args == ("http://1.2.3.4",)


def test_directive_text_quotes_words_that_need_it() -> None:
    (d,) = ac.parse('ProxyPass  "/a b"   http://x/ ""\n', "f")
    assert d.text == 'ProxyPass "/a b" http://x/ ""' and d.where == "f:1"
    (section,) = ac.parse("<Proxy balancer://x>\n</Proxy>\n", "f")
    assert section.text == "<Proxy balancer://x>"


@pytest.mark.parametrize(("text", "message"), [
    ("<Proxy x>\n</Location>\n", "expected </Proxy> but saw </Location>"),
    ("<Proxy x>\nA b\n", "<Proxy> is never closed"),
    ("</Proxy>\n", "without a matching"),
    ("<Proxy x\n</Proxy>\n", "missing closing '>'"),
    ("< >\n", "a section with no name"),
])
def test_bad_sections_are_refused_with_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ac.ApacheConfigError, match=re.escape(message)) as caught:
        ac.parse(text, "front.conf")
    assert caught.value.file == "front.conf" and caught.value.line >= 1


@given(st.text(alphabet=st.sampled_from(list("<>/\\\"' \n#abcPXY=:.")), max_size=200))
def test_any_text_parses_or_raises_the_config_error(text: str) -> None:
    try:
        ac.parse(text, "fuzz")
    except ac.ApacheConfigError:
        pass


def test_count_directives_counts_section_bodies() -> None:
    assert ac.count_directives(ac.parse("A 1\n<B>\nC 1\n<D>\nE 1\n</D>\n</B>\n", "f")) == 5


# --- argument values


@pytest.mark.parametrize(("text", "seconds"), [("5", 5), ("500ms", 0.5), ("2mi", 120),
                                                ("1h", 3600), ("x", None)])
def test_durations(text: str, seconds: float | None) -> None:
    assert ac.parse_duration(text) == seconds


def test_key_values_lower_case_the_key_only() -> None:
    assert list(ac.key_values(["LBSet=1", "route=Web1", "flag"])) == [
        ("lbset", "1"), ("route", "Web1"), ("flag", "")]


def test_debian_envvars() -> None:
    text = ('unset HOME\nif [ x ]; then\n\tSUFFIX="-x"\nfi\nexport APACHE_RUN_USER=www-data\n'
            "export APACHE_RUN_DIR=/var/run/apache2$SUFFIX\nexport LANG\n")
    assert ac.parse_envvars(text) == {"APACHE_RUN_USER": "www-data",
                                      "APACHE_RUN_DIR": "/var/run/apache2"}


# --- scope: variables and conditions


def one(text: str) -> ac.Directive:
    (directive,) = ac.parse(text, "f")
    return directive


def test_scope_substitutes_defines_before_the_environment() -> None:
    scope = ac.Scope(env={"A": "env", "B": "env"})
    scope.track(one("Define A defined\n"))
    assert one("X ${A} ${B} ${C}\n").args == ("${A}", "${B}", "${C}")
    assert scope.substitute(one("X ${A} ${B} ${C}\n")).args == ("defined", "env", "${C}")
    scope.track(one("Undefine A\n"))
    assert scope.substitute(one("X ${A}\n")).args == ("env",)


def test_scope_ifmodule_before_and_after_loadmodule() -> None:
    scope = ac.Scope()
    ssl = one("<IfModule ssl_module>\n</IfModule>\n")
    assert scope.holds(ssl)            # no LoadModule seen yet: a fragment, assume loaded
    scope.track(one("LoadModule proxy_module modules/mod_proxy.so\n"))
    assert not scope.holds(ssl)
    assert scope.holds(one("<IfModule mod_proxy.c>\n</IfModule>\n"))
    assert scope.holds(one("<IfModule !ssl_module>\n</IfModule>\n"))
    assert scope.holds(one("<IfModule watchdog_module>\n</IfModule>\n"))  # compiled in


def test_scope_ifdefine_and_assumed_sections() -> None:
    scope = ac.Scope(defines={"SSL"})
    assert scope.holds(one("<IfDefine SSL>\n</IfDefine>\n"))
    assert not scope.holds(one("<IfDefine !SSL>\n</IfDefine>\n"))
    assert scope.holds(one("<IfFile /nowhere>\n</IfFile>\n"))


@pytest.mark.parametrize(("args", "held"), [
    ((">=", "2.4"), True), (("<", "2.4"), False), (("2.4",), True), (("!=", "2.2"), True),
    (("!>=", "2.4"), False), (("~", "^2"), True), (("/^2/",), True), (("=", "x.y"), True),
])
def test_version_matches_any_2_4(args: tuple[str, ...], held: bool) -> None:
    assert ac.version_matches(args) is held


def test_module_key_spellings() -> None:
    assert {ac.module_key(n) for n in ("proxy_module", "mod_proxy.c",
                                       "/usr/lib/apache2/modules/mod_proxy.so")} == {"proxy"}
