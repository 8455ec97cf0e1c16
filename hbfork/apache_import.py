"""`hbfork import-apache FILE`: translate an Apache heartbeat front's config to hbfork TOML."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("import-apache",
                            help="print the hbfork TOML equivalent of an Apache config")
    parser.add_argument("file", help="httpd.conf / apache2.conf (Includes are followed)")
    return parser


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("import-apache is being written")
