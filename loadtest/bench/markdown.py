"""The one BENCHMARKS.md writer: each benchmark owns a marked section and replaces only it.

scripts/bench writes the whole file (keeping the marked sections of the other benchmarks, see
report/suite.py); every other benchmark puts its section between `<!-- NAME:start -->` and
`<!-- NAME:end -->`.
"""

from __future__ import annotations

import re
from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_section(current: str, name: str, text: str, after: str = "") -> str:
    """`current` with `text` as the section `name`: in place of the section's previous text,
    else right after the section `after` if that is there, else at the end."""
    start, end = markers(name)
    block = f"{start}\n{text.strip()}\n{end}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    anchor = f"<!-- {after}:end -->\n" if after else ""
    if pattern.search(current):
        return pattern.sub(lambda _: block, current)
    if anchor and anchor in current:
        return current.replace(anchor, anchor + "\n" + block, 1)
    return current.rstrip("\n") + "\n\n" + block


def update_section(path: Path, name: str, text: str, after: str = "") -> None:
    """replace_section() on the file at `path` (made if missing)."""
    current = path.read_text() if path.exists() else ""
    path.write_text(replace_section(current, name, text, after))


# scripts/bench regenerates what is above this marker and carries over what follows it (the
# sections of the other benchmarks).
KEPT = "<!-- kept by scripts/bench:"


def kept_tail(current: str) -> str:
    """What follows the KEPT marker in `current`, marker included, after a newline; "" when
    there is none."""
    return "\n" + current[current.index(KEPT):] if KEPT in current else ""


def write_head(path: Path, sections: list[str]) -> None:
    """Write `sections` (blank-line separated) as the top of `path`, keeping its KEPT tail."""
    current = path.read_text() if path.exists() else ""
    path.write_text("\n\n".join(s.strip() for s in sections if s) + "\n" + kept_tail(current))
