"""`hbfork import-apache FILE`: print the hbfork TOML equivalent of an Apache heartbeat front.

The pipeline, one module per stage:

    hbfork.apache_conf       [pure] Apache syntax: directives, sections, ${VAR}, conditions
    hbfork.apache_include    Include/IncludeOptional followed (file access injected)
    hbfork.apache_collect    [pure] the directives that matter to a heartbeat front, sorted out
    hbfork.apache_members    [pure] the one route hbfork takes over -> [[member]]s
    hbfork.apache_translate  [pure] everything else -> hbfork settings; notes on what is left
    this module              [pure] TOML rendering; the command (the only disk and stdout use)

Anything about proxying or heartbeats that is not translated gets a
`# not translated: ... (file:line) - reason` comment; the rest is only counted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from typing import Any

from hbfork.apache_conf import ApacheConfigError, parse_envvars
from hbfork.apache_include import DiskSource, Walked, Walker
from hbfork.apache_members import Member
from hbfork.apache_translate import Translation, translate

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
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
    """The TOML file: a header, remarks, [sections], [[member]]s, then the notes."""
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
    for member in translation.members:
        lines += _render_member(member)
    lines += _render_notes(translation)
    return "\n".join(lines).rstrip() + "\n"


def _render_member(member: Member) -> list[str]:
    lines = [*_comment(f"{member.source.text} ({member.source.where})"), "[[member]]",
             f"address = {toml_value(member.address)}"]
    if member.name:
        lines.append(f"name = {toml_value(member.name)}")
    for comment in member.comments:
        lines += _comment(comment)
    if member.lbset:
        lines.append(f"lbset = {member.lbset}")
    if member.disabled:
        lines.append("disabled = true")
    return [*lines, ""]


def _render_notes(translation: Translation) -> list[str]:
    lines = [note.render() for note in translation.notes]
    summary = (f"# {translation.unrelated} other directive(s) (logging, MIME, directory "
               "access, MPM tuning, ...) do not concern a heartbeat front and were skipped.")
    lines.append(summary)
    if translation.skipped:
        lines.append(f"# {translation.skipped} directive(s) inside <IfModule>/<IfDefine> "
                     "conditions that do not hold were skipped, as Apache skips them.")
    return lines


# --- the command


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("import-apache",
                            help="print the hbfork TOML equivalent of an Apache config")
    parser.add_argument("file", help="httpd.conf / apache2.conf (Includes are followed)")
    parser.add_argument("-d", "--server-root", metavar="DIR",
                        help="ServerRoot for relative Includes when the file sets none "
                             "(default: the file's directory, as Debian's /etc/apache2)")
    parser.add_argument("-D", dest="defines", action="append", default=[], metavar="NAME",
                        help="a name for <IfDefine>, as apache2 -D NAME")
    parser.add_argument("--envvars", metavar="FILE",
                        help="shell file of `export NAME=VALUE` for ${NAME} (default: "
                             "SERVER_ROOT/envvars when it exists, as Debian's apache2ctl)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the translation; 2 if the Apache config cannot be read, 1 if the result would
    not load (a bug: the translator keeps every value inside hbfork's limits)."""
    try:
        walked = _walk(args)
    except ApacheConfigError as err:
        print(f"hbfork import-apache: {err}", file=sys.stderr)
        return EXIT_USAGE
    translation = translate(walked)
    text = render(translation, args.file, walked)
    sys.stdout.write(text)
    return _verify(text, translation)


def _walk(args: argparse.Namespace) -> Walked:
    server_root = os.path.abspath(args.server_root or os.path.dirname(args.file) or ".")
    env = {**os.environ, **_envvars(args.envvars, server_root)}
    return Walker(DiskSource(), server_root, env, args.defines).walk(args.file)


def _verify(text: str, translation: Translation) -> int:
    from hbfork import config as config_module
    from hbfork.errors import ConfigError

    try:
        config_module.loads(text, "<import-apache output>")
    except ConfigError as err:
        print(f"hbfork import-apache: the translation does not load ({err}); please report "
              "this with the Apache config", file=sys.stderr)
        return EXIT_FAILURE
    print(f"hbfork import-apache: {len(translation.members)} member(s), "
          f"{len(translation.notes)} directive(s) not translated (see the comments)",
          file=sys.stderr)
    return EXIT_OK


def _envvars(path: str | None, server_root: str) -> dict[str, str]:
    # Debian's apache2ctl sources SERVER_ROOT/envvars before starting httpd; so do we.
    candidate = path or os.path.join(server_root, "envvars")
    try:
        with open(candidate, encoding="utf-8", errors="replace") as handle:
            return parse_envvars(handle.read())
    except OSError as err:
        if path:  # asked for explicitly: say it failed
            raise ApacheConfigError(path, 0, f"cannot read: {err.strerror}") from None
        return {}
