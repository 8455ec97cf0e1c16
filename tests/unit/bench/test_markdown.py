"""BENCHMARKS.md sections: each benchmark replaces only its own."""

from __future__ import annotations

from pathlib import Path

from loadtest.bench import markdown

DOC = """# Benchmarks

<!-- a:start -->
old a
<!-- a:end -->

<!-- b:start -->
b
<!-- b:end -->
"""


def test_replaces_the_section_in_place_and_nothing_else() -> None:
    out = markdown.replace_section(DOC, "a", "new a\n")
    assert "old a" not in out
    assert out == DOC.replace("old a", "new a")


def test_a_new_section_goes_after_the_named_one() -> None:
    out = markdown.replace_section(DOC, "c", "c text", after="a")
    assert out.index("<!-- a:end -->") < out.index("<!-- c:start -->") \
        < out.index("<!-- b:start -->")


def test_a_new_section_goes_at_the_end_when_the_anchor_is_missing() -> None:
    out = markdown.replace_section(DOC, "c", "c text", after="nowhere")
    assert out.endswith("<!-- c:start -->\nc text\n<!-- c:end -->\n")
    assert out.startswith(DOC.rstrip("\n") + "\n\n")


def test_writing_twice_gives_the_same_file() -> None:
    once = markdown.replace_section(DOC, "c", "c text", after="a")
    assert markdown.replace_section(once, "c", "c text", after="a") == once


def test_section_text_with_regex_and_backslashes_is_kept_verbatim() -> None:
    text = r"p99 \1 $0 (.*) \d+"
    out = markdown.replace_section(DOC, "a", text)
    assert f"<!-- a:start -->\n{text}\n<!-- a:end -->" in out


def test_update_section_makes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    markdown.update_section(path, "x", "hello")
    assert path.read_text() == "\n\n<!-- x:start -->\nhello\n<!-- x:end -->\n"


def test_write_head_keeps_what_follows_the_kept_marker(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    tail = f"{markdown.KEPT} other scripts' sections -->\n<!-- t:start -->\nT\n<!-- t:end -->\n"
    path.write_text("# old head\n\nold numbers\n\n" + tail)
    markdown.write_head(path, ["# Benchmarks", "", "new numbers\n"])
    assert path.read_text() == "# Benchmarks\n\nnew numbers\n\n" + tail


def test_write_head_without_a_marker_writes_only_the_head(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# old\n")
    markdown.write_head(path, ["# new"])
    assert path.read_text() == "# new\n"
