"""The programs a benchmark script drives, checked before it starts anything.

A benchmark that finds nginx missing halfway through leaves a traceback and a half-built lab;
this says at once what is missing and how to get it on Debian.
"""

from __future__ import annotations

import shutil
import sys

# Debian package of each program the scripts use (wrk's is wrk, and so on, unless listed)
PACKAGES = {"apache2": "apache2", "py-spy": "py-spy (pip, the bench extra)"}


def missing(programs: tuple[str, ...]) -> list[str]:
    return [p for p in programs if shutil.which(p) is None
            and not shutil.which(p, path="/usr/sbin:/sbin")]


def require(script: str, *programs: str) -> None:
    """Exit 2 with one clear line when any of `programs` is not installed."""
    absent = missing(programs)
    if not absent:
        return
    packages = " ".join(PACKAGES.get(p, p) for p in absent if p not in ("py-spy",))
    hint = f" (Debian: apt-get install {packages})" if packages else ""
    print(f"{script}: needs {', '.join(absent)}, not installed{hint}", file=sys.stderr)
    raise SystemExit(2)
