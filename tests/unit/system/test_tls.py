"""hbfork.system.tls: certificates into contexts, SNI choice, and the errors that name files."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from hbfork.core.config import loads
from hbfork.core.errors import ConfigError, HbforkError
from hbfork.system.tls import key_warnings, load_contexts
from tests.certs import Authority

MEMBER = '[[member]]\naddress = "10.0.0.11:8080"\n'


def config(tmp_path: Path, certificates: str, extra: str = ""):
    text = (MEMBER + '[[listen]]\naddress = "127.0.0.1:8443"\ntls = true\n' + certificates
            + extra)
    return loads(text, str(tmp_path / "hbfork.toml"), str(tmp_path))


def block(cert: Path, key: Path | None = None, **extra: object) -> str:
    text = f'[[certificate]]\ncert = "{cert}"\n'
    if key is not None:
        text += f'key = "{key}"\n'
    for name, value in extra.items():
        text += f"{name} = {str(value).lower() if isinstance(value, bool) else repr(value)}\n"
    return text.replace("'", '"')


def test_names_come_from_the_certificate_and_sni_picks_one(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    www = ca.issue("www", "www.example.com", "example.com")
    api = ca.issue("api", "*.api.example.com")
    contexts = load_contexts(config(tmp_path, block(www.cert, www.key) + block(api.cert, api.key)))
    assert contexts is not None
    assert contexts.certificates[0].names == ("www.example.com", "example.com")
    assert contexts.default is contexts.certificates[0].context
    assert contexts.for_name("WWW.example.com.") is contexts.certificates[0].context
    assert contexts.for_name("v1.api.example.com") is contexts.certificates[1].context
    assert contexts.for_name("api.example.com") is None  # *. needs one more label
    assert contexts.for_name("unknown.test") is None
    context = contexts.default
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_configured_names_and_default(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    one, two = ca.issue("one", "one.test"), ca.issue("two", "two.test")
    contexts = load_contexts(config(tmp_path, block(one.cert, one.key)
                                    + block(two.cert, two.key, names=["alias.test"],
                                            default=True)))
    assert contexts is not None
    assert contexts.default is contexts.certificates[1].context
    assert contexts.for_name("alias.test") is contexts.certificates[1].context
    assert contexts.for_name("two.test") is None


def test_tls13_only(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    www = ca.issue("www", "www.test")
    contexts = load_contexts(config(tmp_path, block(www.cert, www.key),
                                    '[tls]\nmin_version = "1.3"\n'))
    assert contexts is not None
    assert contexts.default.minimum_version == ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize("problem", ["missing", "expired", "mismatch", "garbage"])
def test_bad_certificates_are_errors_naming_the_file(tmp_path: Path, problem: str) -> None:
    ca = Authority(tmp_path)
    good = ca.issue("good", "good.test")
    cert, key = good.cert, good.key
    if problem == "missing":
        cert = tmp_path / "nope.pem"
    elif problem == "expired":
        old = ca.issue("old", "old.test", expired=True)
        cert, key = old.cert, old.key
    elif problem == "mismatch":
        key = ca.other_key("stranger")
    else:
        cert = tmp_path / "garbage.pem"
        cert.write_text("not a certificate\n")
    with pytest.raises(HbforkError) as info:
        load_contexts(config(tmp_path, block(cert, key)))
    message = str(info.value)
    assert str(cert) in message
    assert {"missing": "no such file", "expired": "expired", "mismatch": "does not match",
            "garbage": "not a PEM certificate"}[problem] in message


def test_group_readable_keys_are_warned_about(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    www = ca.issue("www", "www.test")
    cfg = config(tmp_path, block(www.cert, www.key))
    assert key_warnings(cfg) == []
    www.key.chmod(0o640)
    (warning,) = key_warnings(cfg)
    assert str(www.key) in warning and "0640" in warning


def test_chain_files_are_sent_with_the_certificate(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    www = ca.issue("www", "www.test")
    contexts = load_contexts(config(tmp_path, block(www.cert, www.key, chain=str(ca.path))))
    assert contexts is not None and contexts.certificates[0].names == ("www.test",)
    assert not list(Path("/tmp").glob("hbfork-chain-*"))  # the joined file is gone


@pytest.mark.parametrize(("text", "key", "problem"), [
    ('[[listen]]\naddress = "127.0.0.1:8443"\ntls = true\n', "[[certificate]]",
     "no certificate is configured"),
    ('[[listen]]\naddress = "127.0.0.1:8080"\n', "[[listen]] address", "listed twice"),
    ('[[listen]]\naddress = "127.0.0.1:8443"\ntls = true\nredirect_https = true\n'
     '[[certificate]]\ncert = "x"\n', "[[listen]] #1 redirect_https", "plain listener"),
    ('[[listen]]\naddress = "127.0.0.1:80"\nhsts = 100\n', "[[listen]] #1 hsts",
     "tls = true"),
    ('[[certificate]]\ncert = "x"\n', "[[certificate]]", "no [[listen]] has tls"),
    ('[[listen]]\naddress = "127.0.0.1:8443"\ntls = true\n[[certificate]]\nkey = "k"\n',
     "[[certificate]] #1 cert", "is required"),
])
def test_listener_config_errors(text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads(MEMBER + '[proxy]\nlisten = ["127.0.0.1:8080"]\n' + text)
    assert info.value.key == key and problem in info.value.problem


@pytest.mark.parametrize(("text", "key"), [
    ('[[listen]]\naddress = "127.0.0.1:80"\nredirect_https = true\n',
     "[[listen]] #1 redirect_https"),
    ('[[listen]]\naddress = "127.0.0.1:8443"\ntls = true\nhsts = 60\n[[certificate]]\n'
     'cert = "x"\n', "[[listen]] #1 hsts"),
])
def test_tcp_mode_has_no_http_options_on_its_listeners(text: str, key: str) -> None:
    # TCP mode terminates TLS and relays bytes: nothing HTTP to redirect or add a header to.
    with pytest.raises(ConfigError) as info:
        loads(MEMBER + '[proxy]\nmode = "tcp"\n' + text)
    assert info.value.key == key and "needs [proxy] mode" in info.value.problem


def test_listen_blocks_replace_the_default_listener() -> None:
    cfg = loads(MEMBER + '[[listen]]\naddress = "127.0.0.1:9080"\n')
    assert [str(entry.address) for entry in cfg.listeners] == ["127.0.0.1:9080"]
    cfg = loads(MEMBER + '[proxy]\nlisten = ["127.0.0.1:8080"]\n[[listen]]\n'
                'address = "127.0.0.1:9080"\n')
    assert [str(entry.address) for entry in cfg.listeners] == ["127.0.0.1:8080",
                                                              "127.0.0.1:9080"]
