"""`[proxy] resolve_interval`: members given by host name are resolved again every so often.

The config holds what each name resolved to when the file was read (Config.names). When the
interval is due, the master resolves every name again, with the same resolver a load uses (the
system's, synchronously, as a reload does). If some name now has other addresses (compared as
sets: a round-robin answer in another order is no change), the master reloads as SIGHUP would,
handing the load the addresses just found, so the member table changes exactly as a reload
changes it. A name that fails to resolve keeps its last addresses (said once in the log, and
once again when it resolves again); it never removes a member.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hbfork.core.config import Config
from hbfork.core.member_names import Resolver
from hbfork.system.resolve import system_resolver

log = logging.getLogger("hbfork.master")


class Reresolver:
    def __init__(self, resolve: Resolver = system_resolver) -> None:
        self.resolve = resolve
        self.config: Config | None = None
        self.names: dict[str, tuple[str, ...]] = {}
        self.due = 0.0
        self.failing: set[str] = set()

    def check(self, config: Config, now: float) -> Resolver | None:
        """When due: resolve the names of `config` again. Returns a resolver giving the new
        addresses (the last ones for a name that failed) when any name changed, else None.
        A new config (a reload happened) starts the interval again."""
        interval = config.proxy.resolve_interval
        if config is not self.config:
            self.config, self.names, self.due = config, dict(config.names), now + interval
        if not interval or not self.names or now < self.due:
            return None
        self.due = now + interval
        fresh: dict[str, tuple[str, ...]] = {}
        changes: list[str] = []
        for name, last in self.names.items():
            found = self._resolve(name)
            fresh[name] = found if found is not None else last
            if found is not None and set(found) != set(last):
                changes.append(f"{name} -> {', '.join(found) or 'nothing'} "
                               f"(was {', '.join(last) or 'nothing'})")
        if not changes:
            return None
        log.info("member host names resolve to new addresses: %s; reloading",
                 "; ".join(changes))
        return _fixed(fresh, self.resolve)

    def _resolve(self, name: str) -> tuple[str, ...] | None:
        """The addresses of `name` now, or None when it does not resolve (logged once)."""
        try:
            found = tuple(self.resolve(name))
            problem = "no address"
        except OSError as err:
            found, problem = (), str(err)
        if not found:
            if name not in self.failing:
                self.failing.add(name)
                log.warning("cannot resolve member host name %r again (%s): keeping its "
                            "last addresses", name, problem)
            return None
        if name in self.failing:
            self.failing.discard(name)
            log.info("member host name %r resolves again: %s", name, ", ".join(found))
        return found


def _fixed(fresh: dict[str, tuple[str, ...]], fallback: Resolver) -> Callable[[str], list[str]]:
    """A resolver answering the names just resolved from `fresh` (a name the file gained
    since is asked of `fallback`)."""
    def resolve(host: str) -> list[str]:
        return list(fresh[host]) if host in fresh else fallback(host)
    return resolve
