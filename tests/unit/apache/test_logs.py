"""import-apache translates mod_log_config's LogFormat, CustomLog and TransferLog into [log],
and lists every log line it does not translate."""

from __future__ import annotations

from hbfork.core.logformat import COMMON
from tests.unit.apache.importing import comments, load, notes

FRONT = """ServerRoot /etc/httpd
<Proxy balancer://app>
BalancerMember http://10.0.0.1:8080
</Proxy>
ProxyPass / balancer://app/
"""
DEBIAN_COMBINED = '%h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"'


def _log(config) -> tuple[str | None, str]:
    return config.log.access, config.log.access_format


def test_named_format_and_custom_log():
    text, config = load(FRONT + 'LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{Referer}i\\" '
                        '\\"%{User-Agent}i\\"" combined\n'
                        "CustomLog logs/access_log combined\n")
    assert _log(config) == ("/etc/httpd/logs/access_log", DEBIAN_COMBINED)
    assert not notes(text)
    assert "CustomLog logs/access_log combined (/etc/httpd/httpd.conf:7)" in comments(text)


def test_inline_format():
    _, config = load(FRONT + 'CustomLog /var/log/a.log "%a %{X-Request-ID}i %D"\n')
    assert _log(config) == ("/var/log/a.log", "%a %{X-Request-ID}i %D")


def test_transfer_log_takes_the_unnamed_format_or_apaches_default():
    _, config = load(FRONT + "TransferLog /var/log/t.log\n")
    assert _log(config) == ("/var/log/t.log", COMMON)
    _, config = load(FRONT + 'LogFormat "%h %>s"\nTransferLog /var/log/t.log\n')
    assert _log(config) == ("/var/log/t.log", "%h %>s")


def test_piped_and_extra_logs_are_listed():
    text, config = load(FRONT + 'LogFormat "%h %>s" short\n'
                        'CustomLog "|/usr/bin/rotatelogs /var/log/x 86400" short\n'
                        "CustomLog /var/log/first.log short\n"
                        "CustomLog /var/log/second.log short\n")
    assert _log(config) == ("/var/log/first.log", "%h %>s")
    listed = notes(text)
    assert any("rotatelogs" in n and "piped logs" in n and ":7)" in n for n in listed), listed
    assert any("second.log" in n and "one access log" in n and ":9)" in n for n in listed)


def test_a_condition_is_listed_and_the_log_kept():
    text, config = load(FRONT + 'CustomLog /var/log/a.log "%h" env=!dontlog\n')
    assert _log(config) == ("/var/log/a.log", "%h")
    assert any("env=!dontlog" in n and "every request" in n for n in notes(text))


def test_an_unknown_name_or_unsupported_directive_keeps_the_default_format():
    text, config = load(FRONT + "CustomLog /var/log/a.log nosuchformat\n")
    assert _log(config) == ("/var/log/a.log", "combined+")
    assert any("no LogFormat defines 'nosuchformat'" in n for n in notes(text))
    text, config = load(FRONT + 'LogFormat "%h %f" files\nCustomLog /var/log/b.log files\n')
    assert _log(config) == ("/var/log/b.log", "combined+")
    assert any("'%f' is not supported" in n for n in notes(text))


def test_a_vhost_log_is_taken_before_the_servers():
    """Apache logs a vhost's requests in its own log; the main server's (Debian's
    other_vhosts_access.log) gets those of vhosts without one."""
    text, config = load(FRONT + "CustomLog /var/log/other.log \"%h\"\n"
                        "<VirtualHost *:80>\nServerName a.example\n"
                        "CustomLog /var/log/vhost.log \"%v %h\"\n</VirtualHost>\n")
    assert _log(config) == ("/var/log/vhost.log", "%v %h")
    assert any("other.log" in n and "one access log" in n for n in notes(text))


def test_a_log_inside_a_location_is_listed():
    text, config = load(FRONT + "<Location /x>\nCustomLog /var/log/x.log \"%h\"\n</Location>\n")
    assert config.log.access is None
    assert any("CustomLog" in n and "only a server's" in n for n in notes(text))


def test_an_undefined_variable_is_listed():
    text, config = load(FRONT + "CustomLog ${APACHE_LOG_DIR}/access.log \"%h\"\n")
    assert config.log.access is None
    assert any("${APACHE_LOG_DIR} not defined" in n for n in notes(text))


def test_error_log_to_syslog():
    _, config = load(FRONT + "ErrorLog syslog:local3\n")
    assert (config.log.error, config.log.syslog_facility) == ("syslog:unix:/dev/log", "local3")
    _, config = load(FRONT + "ErrorLog syslog\n")
    assert (config.log.error, config.log.syslog_facility) == ("syslog:unix:/dev/log", "local7")
    text, config = load(FRONT + "ErrorLog syslog:nosuch\n")
    assert config.log.error is None
    assert any("unknown syslog facility 'nosuch'" in n for n in notes(text))


def test_an_error_log_file_stays_the_servers_own():
    text, config = load(FRONT + "ErrorLog logs/error_log\n")
    assert config.log.error is None and not notes(text)
