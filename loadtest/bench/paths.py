"""Where things are: the checkout this package runs from, and the files it ships."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parents[1]             # the checkout: loadtest/bench/ -> loadtest/ -> ROOT
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
LUA = PACKAGE / "lua"
WRK_POST = LUA / "post.lua"           # wrk: wrk.method = "POST", a body of N bytes
APACHE_UPLOAD = LUA / "upload.lua"    # the Apache backends' upload handler (mod_lua)


def shown(path: Path) -> str:
    """`path` relative to the checkout when it is inside it (for reports), else as given."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
