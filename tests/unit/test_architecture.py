"""The package's shape: no import cycles, imports only in the declared direction, modules and
classes of a readable size. Imports are read with `ast` (nothing is run), including the ones
inside functions and under TYPE_CHECKING: a dependency hidden from the interpreter is still a
dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "hbfork"

# Which of hbfork's packages each package may import (besides itself). `cli` wires the others
# together; `proxy` and `master` never import each other (the CLI hands the worker entry point
# to the master).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "table": {"core"},
    "system": {"core"},
    "beat": {"core"},
    "apache": {"core"},
    "ops": {"core", "table", "system"},
    "proxy": {"core", "table", "system", "ops"},
    "master": {"core", "table", "system", "ops"},
    "cli": {"core", "table", "system", "beat", "apache", "ops", "proxy", "master"},
}
TOP_LEVEL = {"hbfork", "hbfork.__main__"}  # the version, and `python -m hbfork` -> cli
MAX_LINES = 450
MAX_METHODS = 30  # per class, counting those inherited from hbfork's own classes


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The hbfork modules `path` imports (anywhere in the file)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the module pkg.mod when there is one.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t == "hbfork" or t.startswith("hbfork."))
    return {t for t in found if t != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: {t for t in imports_of(path, name, known) if t in known}
            for name, path in mods.items()}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and module not in TOP_LEVEL else None


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a chain a -> b -> ... -> a, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


# --- the checks themselves work


def test_find_cycle_reports_the_chain() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    cycle = find_cycle(edges)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_of_reads_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from hbfork.proxy.worker import Worker\n"
                      "def f():\n    from hbfork.core import http11\n")
    found = imports_of(source, "hbfork.ops.m",
                       {"hbfork.proxy.worker", "hbfork.core", "hbfork.core.http11"})
    assert found == {"hbfork.proxy.worker", "hbfork.core.http11"}


def test_every_package_is_declared() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(ALLOWED), "declare each package's allowed imports in ALLOWED"


# --- the package


def test_no_import_cycles() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def direction_violations(edges: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in sorted(edges.items()):
        source = package_of(module)
        for target in sorted(targets):
            dest = package_of(target)
            if source is None or dest is None or dest == source:
                continue
            if dest not in ALLOWED[source]:
                wrong.append(f"{module} -> {target} ({source} may import "
                             f"{', '.join(sorted(ALLOWED[source])) or 'nothing of hbfork'})")
    return wrong


def test_direction_violations_are_found() -> None:
    edges = {"hbfork.master.workers": {"hbfork.proxy.worker", "hbfork.core.config"},
             "hbfork.core.config": {"hbfork.core.settings"},
             "hbfork.cli.main": {"hbfork.master.master"}}
    assert direction_violations(edges) == [
        "hbfork.master.workers -> hbfork.proxy.worker (master may import core, ops, system, "
        "table)"]


def test_imports_follow_the_declared_direction() -> None:
    wrong = direction_violations(graph())
    assert not wrong, "imports against the declared direction:\n" + "\n".join(wrong)


def test_core_is_pure() -> None:
    """core opens no sockets or files and reads no clock: those are passed in."""
    forbidden = {"socket", "select", "selectors", "time", "threading", "subprocess", "signal"}
    offenders = []
    for name, path in modules().items():
        if package_of(name) != "core":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "socket" and \
                    {a.name for a in node.names} <= {"AF_INET", "AF_INET6"}:
                continue  # address family constants, no socket
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{name} imports {n}" for n in names if n.split(".")[0] in forbidden]
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "open":
                offenders.append(f"{name} calls open()")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_size(name: str) -> None:
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it along its seams"


def test_every_package_says_what_it_may_import() -> None:
    for package in ALLOWED:
        doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
        assert doc and "import" in doc, f"hbfork/{package}/__init__.py needs its docstring"


def class_methods(sources: dict[str, str]) -> dict[str, int]:
    """Methods per class ("module.Class") in `sources` (module name -> source text), counting
    those it inherits from the classes in `sources` (by the base's name as written: a base
    imported under its own name, or module.Class)."""
    own: dict[str, set[str]] = {}
    bases: dict[str, list[str]] = {}
    by_name: dict[str, list[str]] = {}
    for module, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                key = f"{module}.{node.name}"
                own[key] = {n.name for n in node.body
                            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
                bases[key] = [b.id if isinstance(b, ast.Name) else b.attr
                              for b in node.bases if isinstance(b, (ast.Name, ast.Attribute))]
                by_name.setdefault(node.name, []).append(key)

    def methods(key: str, seen: frozenset[str]) -> set[str]:
        found = set(own[key])
        for base in bases[key]:
            for parent in by_name.get(base, ()):
                if parent not in seen:
                    found |= methods(parent, seen | {key})
        return found

    return {key: len(methods(key, frozenset({key}))) for key in own}


def test_class_methods_counts_inherited_ones() -> None:
    sources = {"a": "class A:\n    def f(self): pass\n    def g(self): pass\n",
               "b": "from a import A\nclass B(A):\n    def g(self): pass\n    def h(self): pass\n"
                    "class C(B, object):\n    @property\n    def p(self): pass\n"}
    assert class_methods(sources) == {"a.A": 2, "b.B": 3, "b.C": 4}


def test_class_size() -> None:
    counts = class_methods({name: path.read_text() for name, path in modules().items()})
    big = {key: n for key, n in counts.items() if n > MAX_METHODS}
    assert not big, f"classes over {MAX_METHODS} methods (split them into parts): {big}"
