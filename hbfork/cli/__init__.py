"""The command line: argument parsing and the subcommands (`run`, `check`, `status`, `ctl`,
`health`, `beat`, `backend`, `import-apache`, `demo`). The only package that wires the others
together, so it may import all of them.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """The `hbfork` command. `health` is run by keepalived every second: it skips importing
    the rest of the command line (see hbfork.cli.health)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["health"]:
        from hbfork.cli.health import main as health_main

        return health_main(argv[1:])
    from hbfork.cli.main import main as full_main

    return full_main(argv)


__all__ = ["main"]
