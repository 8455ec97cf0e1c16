"""The README and the manual (docs/*.md) have no dead links: every relative link and image
points at a file of the tree, every #anchor at a heading of its page (as GitHub names them),
and every page of the manual is linked from the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", ROOT / "BENCHMARKS.md", *ROOT.glob("docs/*.md"),
                *ROOT.glob("loadtest/*.md")])

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)
LINK = re.compile(r"!?\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
HTML_ID = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, file:


def prose(text: str) -> str:
    """`text` without fenced blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text as rendered (no markup), lower case, without
    punctuation other than - and _, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text)                        # inline HTML
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page has: its headings' (numbered -1, -2 when repeated) and HTML ids."""
    found: set[str] = set(HTML_ID.findall(text))
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def links(text: str) -> list[str]:
    return [target for _text, target in LINK.findall(prose(text))]


def dead_links(page: Path) -> list[str]:
    """The links of `page` that lead nowhere, each with the reason."""
    dead = []
    for target in links(page.read_text()):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        goal = (page.parent / path).resolve() if path else page
        if not goal.exists():
            dead.append(f"{target}: no such file")
        elif anchor and goal.suffix == ".md" and anchor not in anchors(goal.read_text()):
            dead.append(f"{target}: no heading with that anchor in {goal.name}")
    return dead


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert dead_links(page) == []


def test_every_page_of_the_manual_is_linked_from_the_readme() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links((ROOT / "README.md")
                                                                     .read_text())}
    assert [p.name for p in ROOT.glob("docs/*.md") if p.resolve() not in linked] == []


def test_the_checker_finds_dead_links(tmp_path: Path) -> None:
    """The check above is honest: a missing file, a missing anchor and a missing image fail;
    links in code, external ones and good anchors (repeated headings too) pass."""
    (tmp_path / "other.md").write_text("# Other\n\n## Status and metrics\n\n## A `code` title: "
                                       "x/y (z)\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Here, now\n\n"
        "[ok](other.md) [ok](other.md#status-and-metrics) [ok](other.md#a-code-title-xy-z)\n"
        "[ok](other.md#twice-1) [ok](#here-now) [ok](https://example.com/nowhere)\n"
        "`[in code](gone.md)`\n```\n[in a block](gone.md)\n```\n"
        "[bad](gone.md) [bad](other.md#status) ![bad](gone.png) [bad](#nowhere)\n"
        "[bad](other.md#twice-2)\n")
    assert dead_links(page) == [
        "gone.md: no such file",
        "other.md#status: no heading with that anchor in other.md",
        "gone.png: no such file",
        "#nowhere: no heading with that anchor in page.md",
        "other.md#twice-2: no heading with that anchor in other.md",
    ]
