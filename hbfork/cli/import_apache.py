"""`hbfork import-apache FILE`: read an Apache config (following its Includes), translate it
and print hbfork's TOML (hbfork.apache does the work; this is the disk and stdout side)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from hbfork.apache.conf import ApacheConfigError, parse_envvars
from hbfork.apache.include import DiskSource, Walked, Walker
from hbfork.apache.render import render
from hbfork.apache.translate import Translation, translate
from hbfork.core import config as config_module
from hbfork.core.errors import ConfigError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


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
    try:
        # Members by host name are resolved when hbfork reads the file; here a documentation
        # address per name stands in (distinct names, distinct addresses: two members named
        # differently are never one member), so that the rest of the translation is checked.
        config_module.loads(text, "<import-apache output>", resolve=_stand_in_resolver())
    except ConfigError as err:
        print(f"hbfork import-apache: the translation does not load ({err}); please report "
              "this with the Apache config", file=sys.stderr)
        return EXIT_FAILURE
    members = {m.address for p in translation.pools for m in p.members}
    print(f"hbfork import-apache: {len(translation.pools)} pool(s), {len(members)} member(s), "
          f"{len(translation.routes)} route(s), {len(translation.notes)} directive(s) not "
          "translated (see the comments)", file=sys.stderr)
    return EXIT_OK


def _stand_in_resolver() -> Callable[[str], list[str]]:
    """A resolver giving each host name its own address of 198.18.0.0/15 (RFC 2544's
    benchmarking range, routed nowhere)."""
    given: dict[str, str] = {}

    def resolve(host: str) -> list[str]:
        if host not in given:
            number = len(given) + 1
            given[host] = f"198.18.{number >> 8}.{number & 0xFF}"
        return [given[host]]
    return resolve


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
