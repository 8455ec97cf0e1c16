"""The harness's shape (read with `ast`, nothing is run): no `sys.path` edits anywhere in the
scripts, the harness or the tests; modules of one job (<= 450 lines, classes <= 30 methods);
hbfork never imports the harness; every script but demo/test/loadtest is a thin entry point."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
HARNESS = ROOT / "loadtest" / "bench"
MAX_LINES = 450
MAX_METHODS = 30
# Scripts that are not benchmark entry points: the two commands, the Locust kit, and runs of
# test modules repeated under load (issue 27).
FULL_SCRIPTS = {"demo", "test", "loadtest", "_venv.sh", "upgrade-soak", "ha-under-load"}


def python_files() -> list[Path]:
    files = [*sorted((ROOT / "loadtest").rglob("*.py")), *sorted((ROOT / "tests").rglob("*.py"))]
    files += [p for p in sorted((ROOT / "scripts").iterdir())
              if p.is_file() and p.read_text(errors="replace").startswith("#!/usr/bin/env python")]
    return files


def edits_sys_path(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        # a call of the path list's insert, append or extend, or an assignment to the list
        # or to a slice of it
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "path" and isinstance(node.value.value, ast.Name) \
                and node.value.value.id == "sys" and node.attr in ("insert", "append", "extend"):
            return True
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                base = target.value if isinstance(target, ast.Subscript) else target
                if isinstance(base, ast.Attribute) and base.attr == "path" \
                        and isinstance(base.value, ast.Name) and base.value.id == "sys":
                    return True
    return False


# The module search path's name, spelt in parts: the examples below are source text for the
# check to parse, and written whole they would read as edits to a text search for them.
SEARCH_PATH = "sys" + "." + "path"


def test_the_sys_path_check_sees_an_edit() -> None:
    assert edits_sys_path(ast.parse(f"import sys\n{SEARCH_PATH}.insert(0, 'x')"))
    assert edits_sys_path(ast.parse(f"import sys\n{SEARCH_PATH}[:0] = ['x']"))
    assert not edits_sys_path(ast.parse(f"import sys\nprint({SEARCH_PATH})"))


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sys_path_edits(path: Path) -> None:
    assert not edits_sys_path(ast.parse(path.read_text())), \
        f"{path.relative_to(ROOT)} edits sys.path: import from an installed package instead"


@pytest.mark.parametrize("path", sorted(HARNESS.rglob("*.py")), ids=lambda p: p.name)
def test_harness_modules_are_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            methods = [n for n in node.body
                       if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
            assert len(methods) <= MAX_METHODS, f"{path.name}: class {node.name}"


def test_hbfork_never_imports_the_harness() -> None:
    for path in (ROOT / "hbfork").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "loadtest" for n in names), path


@pytest.mark.parametrize("path", [p for p in sorted((ROOT / "scripts").iterdir())
                                  if p.name not in FULL_SCRIPTS],
                         ids=lambda p: p.name)
def test_other_scripts_are_thin_entry_points(path: Path) -> None:
    text = path.read_text()
    module = text.split("bench_module ", 1)[1].split()[1]
    assert len(text.splitlines()) <= 6
    assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module
