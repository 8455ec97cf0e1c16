"""The command line: argument parsing and the subcommands (`run`, `check`, `status`, `ctl`,
`beat`, `backend`, `import-apache`, `demo`). The only package that wires the others together,
so it may import all of them.
"""

from hbfork.cli.main import main

__all__ = ["main"]
