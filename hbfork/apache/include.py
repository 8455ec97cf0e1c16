"""Follow an Apache config through its Include / IncludeOptional lines, as httpd does at start.

`Walker(source, server_root, env, defines).walk(path)` reads `path`, inlines every included
file in Apache's order (globs sorted, directories walked recursively, relative paths taken from
the ServerRoot in force at that line), applies ${VAR} and drops the bodies of <IfModule>/
<IfDefine>/<IfVersion> sections that do not hold. All file access goes through `source`
(DiskSource, or a dict in tests), so everything else here is pure.
"""

from __future__ import annotations

import glob
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from hbfork.apache.conf import (
    CONDITIONAL_SECTIONS,
    ApacheConfigError,
    Directive,
    Note,
    Scope,
    count_directives,
    parse,
    resolve_path,
)

MAX_INCLUDE_DEPTH = 128                 # Apache's AP_MAX_INCLUDE_DEPTH
DEFAULT_RUNTIME_DIR = "logs"            # Apache's DEFAULT_REL_RUNTIMEDIR, under ServerRoot


class Source(Protocol):
    """Where the walker gets files from (the disk, or a dict in tests)."""

    def expand(self, pattern: str) -> list[str]:
        """Files matching an absolute path, glob or directory (recursively), in Apache's
        order; [] when nothing matches."""
        ...

    def read(self, path: str) -> str: ...


class DiskSource:
    """The real file system. Apache sorts glob matches and directory entries by name."""

    def expand(self, pattern: str) -> list[str]:
        if glob.has_magic(pattern):
            found: list[str] = []
            for match in sorted(glob.glob(pattern)):
                found.extend(self._files(match))
            return found
        return self._files(pattern) if os.path.exists(pattern) else []

    def _files(self, path: str) -> list[str]:
        if not os.path.isdir(path):
            return [path]
        found: list[str] = []
        for name in sorted(os.listdir(path)):
            found.extend(self._files(os.path.join(path, name)))
        return found

    def read(self, path: str) -> str:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()


@dataclass
class Walked:
    """Every directive Apache would act on, in order, includes inlined."""

    directives: list[Directive]
    files: list[str]
    server_root: str
    runtime_dir: str
    notes: list[Note]
    skipped: int              # directives inside conditions that do not hold


class Walker:
    """Follows a config the way Apache reads it at start-up, in order."""

    def __init__(self, source: Source, server_root: str, env: Mapping[str, str] | None = None,
                 defines: Sequence[str] = ()) -> None:
        self.source = source
        self.server_root = posixpath.normpath(server_root)
        self.scope = Scope(dict(env or {}), set(defines))
        self.runtime_dir: str | None = None
        self.files: list[str] = []
        self.notes: list[Note] = []
        self.skipped = 0

    def walk(self, path: str) -> Walked:
        """Read `path` (ApacheConfigError if it cannot be read) and everything it includes."""
        try:
            text = self.source.read(path)
        except OSError as err:
            raise ApacheConfigError(path, 0, f"cannot read: {err.strerror or err}") from None
        self.files.append(path)
        directives = self._walk(parse(text, path), (path,))
        runtime = self.runtime_dir or posixpath.join(self.server_root, DEFAULT_RUNTIME_DIR)
        return Walked(directives, self.files, self.server_root, runtime, self.notes,
                      self.skipped)

    def resolve(self, path: str) -> str:
        return resolve_path(self.server_root, path)

    def _walk(self, directives: Sequence[Directive], chain: tuple[str, ...]) -> list[Directive]:
        out: list[Directive] = []
        for original in directives:
            directive = self.scope.substitute(original)
            if directive.children is None:
                out.extend(self._plain(directive, chain))
            elif directive.key in CONDITIONAL_SECTIONS:
                if self.scope.holds(directive):
                    out.extend(self._walk(directive.children, chain))
                else:
                    self.skipped += count_directives(directive.children)
            else:
                out.append(replace(directive,
                                   children=tuple(self._walk(directive.children, chain))))
        return out

    def _plain(self, directive: Directive, chain: tuple[str, ...]) -> list[Directive]:
        if directive.key in ("include", "includeoptional"):
            return self._include(directive, chain)
        self.scope.track(directive)
        self._track_paths(directive)
        return [directive]

    def _track_paths(self, d: Directive) -> None:
        """ServerRoot moves later relative Includes; DefaultRuntimeDir places hb.dat."""
        first = d.args[0] if d.args else ""
        if d.key == "serverroot" and first:
            self.server_root = posixpath.normpath(first)
        elif d.key == "defaultruntimedir" and first:
            self.runtime_dir = self.resolve(first)

    def _include(self, d: Directive, chain: tuple[str, ...]) -> list[Directive]:
        if not d.args:
            self.notes.append(Note.of(d, "no file given"))
            return []
        files = self.source.expand(self.resolve(d.args[0]))
        if not files and d.key == "include":
            self.notes.append(Note.of(d, "nothing matches (Apache would refuse to start)"))
        out: list[Directive] = []
        for path in files:
            out.extend(self._include_file(d, path, chain))
        return out

    def _include_file(self, d: Directive, path: str, chain: tuple[str, ...]) -> list[Directive]:
        if path in chain:
            self.notes.append(Note.of(d, f"{path} includes itself (Apache refuses this)"))
            return []
        if len(chain) >= MAX_INCLUDE_DEPTH:
            self.notes.append(Note.of(d, f"includes nested deeper than {MAX_INCLUDE_DEPTH}"))
            return []
        try:
            text = self.source.read(path)
        except OSError as err:
            self.notes.append(Note.of(d, f"cannot read {path}: {err.strerror or err}"))
            return []
        self.files.append(path)
        return self._walk(parse(text, path), (*chain, path))
