"""Apache's access logs (mod_log_config) as hbfork's [log] settings [pure].

    LogFormat FORMAT NAME     a named format (the last definition wins, as in Apache)
    LogFormat FORMAT          the format TransferLog uses
    CustomLog FILE FORMAT|NAME [env=...|expr=...]
    TransferLog FILE
    ErrorLog syslog[:FACILITY]  (an error log file is the server's own: not translated)

hbfork writes one access log: the first CustomLog (or TransferLog) of a virtual host, else of
the main server, becomes [log] access and access_format (its format compiled as
hbfork compiles it at load: one hbfork cannot log is noted, and hbfork's default kept). Every
other log line is listed with the reason: piped logs (`|program`; hbfork can send to syslog
instead), further logs, conditions (`env=`, `expr=`: hbfork logs every request; the log is
translated without its condition), format names nothing defines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hbfork.apache.conf import Directive, Note, Setting, resolve_path, undefined_note
from hbfork.core.logformat import COMMON, compile_format
from hbfork.core.syslog import FACILITIES

APACHE_DEFAULT = COMMON  # mod_log_config's format when no LogFormat without a name is given


@dataclass
class LogPlan:
    settings: list[Setting] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True)
class LogLine:
    """A LogFormat, CustomLog or TransferLog, and whether it sits in a <VirtualHost>."""

    directive: Directive
    vhost: bool = False


def plan_logs(lines: Sequence[LogLine], server_root: str) -> LogPlan:
    plan = LogPlan()
    named: dict[str, str] = {}
    default = APACHE_DEFAULT
    for line in lines:
        d = line.directive
        if d.key == "logformat" and len(d.args) >= 2:
            named[d.args[1]] = d.args[0]
        elif d.key == "logformat" and d.args:
            default = d.args[0]
        elif d.key == "logformat":
            plan.notes.append(Note.of(d, "no format given"))
    logs = [line for line in lines if line.directive.key in ("customlog", "transferlog")]
    chosen = _choose(logs, plan)
    for line in logs:
        if line is not chosen:
            plan.notes.append(Note.of(line.directive, _why_not(line.directive, chosen)))
    if chosen is not None:
        _translate(chosen.directive, named, default, server_root, plan)
    errors = [line for line in lines if line.directive.key == "errorlog"]
    if errors:  # the main server's, else the first vhost's
        _error_log(([line for line in errors if not line.vhost] or errors)[0].directive, plan)
    return plan


def _error_log(d: Directive, plan: LogPlan) -> None:
    """`ErrorLog syslog[:facility]`: hbfork's error log to the local syslog socket."""
    facility = d.args[0].partition(":")[2] or "local7"  # Apache's default facility
    if facility not in FACILITIES:
        plan.notes.append(Note.of(d, f"unknown syslog facility {facility!r}"))
        return
    plan.settings.append(Setting("error", "syslog:unix:/dev/log",
                                 f"{d.text} ({d.where}): to the local syslog socket"))
    if not any(s.key == "syslog_facility" for s in plan.settings):
        plan.settings.append(Setting("syslog_facility", facility, f"{d.text} ({d.where})"))


def _choose(logs: list[LogLine], plan: LogPlan) -> LogLine | None:
    """The log hbfork writes: the first usable one of a <VirtualHost> (Apache logs a vhost's
    requests there, not in the main server's logs, which get only the requests of vhosts
    without a log of their own), else the main server's."""
    usable = [line for line in logs if _usable(line.directive)]
    vhosts = [line for line in usable if line.vhost]
    return (vhosts or usable)[0] if usable else None


def _usable(d: Directive) -> bool:
    return bool(d.args) and not d.args[0].startswith("|") and \
        (d.key == "transferlog" or len(d.args) >= 2)


def _why_not(d: Directive, chosen: LogLine | None) -> str:
    if not d.args or (d.key == "customlog" and len(d.args) < 2):
        return "a CustomLog needs a file and a format"
    if d.args[0].startswith("|"):
        return ("piped logs are not translated: hbfork writes a file, or sends each line to "
                "syslog ([log] access = \"syslog:unix:/dev/log\" or \"syslog:udp://IP:PORT\")")
    where = chosen.directive.where if chosen is not None else "?"
    return f"hbfork writes one access log: [log] access comes from {where}"


def _translate(d: Directive, named: dict[str, str], default: str, server_root: str,
               plan: LogPlan) -> None:
    note = undefined_note(d, d.args[0])
    if note is not None:
        plan.notes.append(note)
        return
    path = resolve_path(server_root, d.args[0])
    plan.settings.append(Setting("access", path, f"{d.text} ({d.where})"))
    if d.key == "customlog":
        wanted = d.args[1]
        if wanted in named:
            text, source = named[wanted], f"LogFormat {wanted!r}"
        elif "%" in wanted:
            text, source = wanted, "its inline format"
        else:
            plan.notes.append(Note.of(d, f"no LogFormat defines {wanted!r}: hbfork's default "
                                         "format (combined+) is written"))
            text, source = "", ""
    else:
        text, source = default, "the LogFormat without a name" if default != APACHE_DEFAULT \
            else "Apache's default format (common)"
    conditions = [a for a in d.args[2:] if a.startswith(("env=", "expr="))]
    if conditions:
        plan.notes.append(Note.of(d, f"{' '.join(conditions)}: hbfork logs every request "
                                     "(the log is translated without this condition)"))
    if text:
        _format(d, text, source, plan)


def _format(d: Directive, text: str, source: str, plan: LogPlan) -> None:
    try:
        compile_format(text)
    except ValueError as err:
        plan.notes.append(Note.of(d, f"{source}: {err}; hbfork's default format (combined+) "
                                     "is written"))
        return
    plan.settings.append(Setting("access_format", text, f"{source} of {d.where}"))
