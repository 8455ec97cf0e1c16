"""The TOML that `hbfork import-apache FILE` prints for an Apache heartbeat front.

The pipeline, one module per stage:

    hbfork.apache.conf       [pure] Apache syntax: directives, sections, ${VAR}, conditions
    hbfork.apache.include    Include/IncludeOptional followed (file access injected)
    hbfork.apache.collect    [pure] the directives that matter to a heartbeat front, sorted out
    hbfork.apache.members    [pure] one BalancerMember -> a [[pool.member]]
    hbfork.apache.pools      [pure] balancers and single servers -> [[pool]]s
    hbfork.apache.routes     [pure] one ProxyPass -> a [[route]]
    hbfork.apache.vhosts     [pure] the order Apache tries ProxyPass in, per vhost -> routes
    hbfork.apache.ssl        [pure] one server's mod_ssl settings, merged as mod_ssl does
    hbfork.apache.https      [pure] a server's redirect to https, its HSTS header
    hbfork.apache.listeners  [pure] Listen + TLS front -> [[listen]], [[certificate]], [tls]
    hbfork.apache.translate  [pure] the rest -> hbfork settings; notes on what is left
    this module              [pure] TOML rendering
    hbfork.cli.import_apache the command (the only disk and stdout use)

Anything about proxying or heartbeats that is not translated gets a
`# not translated: ... (file:line) - reason` comment; the rest is only counted.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from hbfork.apache.include import Walked
from hbfork.apache.listeners import TablePlan
from hbfork.apache.members import Member
from hbfork.apache.pools import PoolPlan
from hbfork.apache.routes import RoutePlan
from hbfork.apache.translate import Translation

COMMENT_WIDTH = 99


# --- rendering (pure)


def toml_value(value: Any) -> str:
    """A TOML literal for a setting's value (str, bool, int, float or a list of those)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a valid TOML basic string


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, COMMENT_WIDTH, initial_indent="# ", subsequent_indent="# ",
                         break_long_words=False, break_on_hyphens=False)


def render(translation: Translation, source: str, walked: Walked) -> str:
    """The TOML file: a header, remarks, [sections], [[listen]]s, [[certificate]]s,
    [[pool]]s, [[route]]s, then the notes."""
    lines = [f"# hbfork configuration translated from {source} by `hbfork import-apache`.",
             f"# ServerRoot {walked.server_root}; {len(walked.files)} file(s) read.",
             "# Review it, then: hbfork check -c THIS_FILE",
             "# `hbfork status` and `hbfork ctl` find the master by its pid file: with "
             "conf/hbfork.service,",
             '# add pidfile = "/run/hbfork/hbfork.pid" to [proxy].', ""]
    for remark in translation.remarks:
        lines += _comment(remark)
    if translation.remarks:
        lines.append("")
    for section, settings in translation.sections.items():
        if settings:
            lines.append(f"[{section}]")
            for setting in settings:
                lines += _comment(setting.comment)
                lines.append(f"{setting.key} = {toml_value(setting.value)}")
            lines.append("")
    for block in (*translation.listens, *translation.certificates):
        lines += _render_table(block)
    for pool in translation.pools:
        lines += _render_pool(pool)
    for route in translation.routes:
        lines += _render_route(route)
    lines += _render_notes(translation)
    return "\n".join(lines).rstrip() + "\n"


def _render_table(block: TablePlan) -> list[str]:
    lines = [line for heading in block.heading for line in _comment(heading)]
    lines.append(f"[[{block.kind}]]")
    for setting in block.settings:
        lines += _comment(setting.comment)
        lines.append(f"{setting.key} = {toml_value(setting.value)}")
    return [*lines, ""]


def _render_pool(pool: PoolPlan) -> list[str]:
    lines = [*_comment(f"{pool.source.text} ({pool.source.where})"), "[[pool]]",
             f"name = {toml_value(pool.name)}"]
    for comment in pool.comments:
        lines += _comment(comment)
    for key, value, comment in pool.settings:
        lines += _comment(comment)
        lines.append(f"{key} = {toml_value(value)}")
    lines.append("")
    for member in pool.members:
        lines += _render_member(member, pool.direct)
    return lines


def _render_member(member: Member, direct: bool) -> list[str]:
    lines = [] if direct else _comment(f"{member.source.text} ({member.source.where})")
    lines.append("[[pool.member]]")
    for comment in member.comments:
        lines += _comment(comment)
    lines += [f"{key} = {toml_value(value)}" for key, value in member.table().items()]
    return [*lines, ""]


def _render_route(route: RoutePlan) -> list[str]:
    lines = []
    for heading in route.heading:
        lines += [*_comment(heading), ""]
    for comment in route.comments:
        lines += _comment(comment)
    lines.append("[[route]]")
    lines += [f"{key} = {toml_value(value)}" for key, value in route.table().items()]
    return [*lines, ""]


def _render_notes(translation: Translation) -> list[str]:
    lines = [note.render() for note in translation.notes]
    summary = (f"# {translation.unrelated} other directive(s) that cannot change what a client "
               "or member sees (modules, MPM tuning, MIME types, listings of local files, the "
               "server's own error log) were skipped.")
    lines.append(summary)
    if translation.skipped:
        lines.append(f"# {translation.skipped} directive(s) inside <IfModule>/<IfDefine> "
                     "conditions that do not hold were skipped, as Apache skips them.")
    return lines
