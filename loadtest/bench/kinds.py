"""scripts/bench: the kinds of exchange measured, shared by the runner, the servers and the report.

    small     GET of a 604-byte file (about nginx's default index page)
    16k       GET of a 16 KiB file
    1m-down   GET of a 1 MiB file
    1m-up     POST of a 1 MiB body, which the backend reads to the end and discards
              (Apache: mod_lua, loadtest/bench/lua/upload.lua; it answers with the count it read)

`--kinds 1m` means both 1 MiB directions. For 1 MiB the figure is throughput (MiB/s: with a
1 MiB body it equals requests/s).
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.bench.paths import APACHE_UPLOAD, WRK_POST

__all__ = ["ALIASES", "APACHE_UPLOAD", "FILES", "KINDS", "WRK_POST", "Kind", "parse_kinds"]
MIB = 1 << 20
# About nginx's default index page: a small static answer, so the fronts are what is measured.
SMALL_BODY = b"<!DOCTYPE html><title>hbfork bench</title>\n" + b"x" * 560 + b"\n"


@dataclass(frozen=True)
class Kind:
    name: str
    path: str     # the same URL path on every front and backend
    method: str   # GET: `size` is the response body; POST: the request body
    size: int
    title: str    # the report's heading

    @property
    def bulk(self) -> bool:
        """Throughput (MiB/s) is the figure, not requests/s."""
        return self.size >= MIB

    def wrk_args(self) -> list[str]:
        """What wrk needs besides the URL: a script for a POST."""
        return ["-s", str(WRK_POST)] if self.method == "POST" else []

    def wrk_script_args(self) -> list[str]:
        """Arguments after `--`, for the script's init(args)."""
        return [str(self.size)] if self.method == "POST" else []

    def mib_s(self, requests_per_second: float) -> float:
        return requests_per_second * self.size / MIB


KINDS = {kind.name: kind for kind in (
    Kind("small", "/", "GET", len(SMALL_BODY), f"Small responses ({len(SMALL_BODY)}-byte file)"),
    Kind("16k", "/16k.bin", "GET", 16 * 1024, "16 KiB responses"),
    Kind("1m-down", "/1m.bin", "GET", MIB, "1 MiB downloads (GET)"),
    Kind("1m-up", "/upload", "POST", MIB, "1 MiB uploads (POST, read and discarded)"),
)}
ALIASES = {"1m": ("1m-down", "1m-up"), "all": tuple(KINDS)}

# The files every backend serves, by URL path (the upload path is a handler, not a file).
FILES = {kind.path: (SMALL_BODY if kind.name == "small" else
                     (b"0123456789abcdef" * (kind.size // 16 + 1))[:kind.size])
         for kind in KINDS.values() if kind.method == "GET"}


def parse_kinds(text: str) -> list[str]:
    """"small,16k,1m" -> ["small", "16k", "1m-down", "1m-up"]; ValueError for unknown ones."""
    out: list[str] = []
    for word in (w.strip() for w in text.split(",") if w.strip()):
        if word not in KINDS and word not in ALIASES:
            raise ValueError(f"unknown kind {word!r} (known: {', '.join([*KINDS, *ALIASES])})")
        for name in ALIASES.get(word, (word,)):
            if name not in out:
                out.append(name)
    if not out:
        raise ValueError("no kinds given")
    return out
