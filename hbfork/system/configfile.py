"""Reading the config file: the only place the TOML file is opened."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from hbfork.core.config import Config, from_document
from hbfork.core.errors import ConfigError
from hbfork.core.member_names import Resolver, resolve_names
from hbfork.system.resolve import system_resolver

__all__ = ["Resolver", "load"]

log = logging.getLogger("hbfork.config")

if sys.version_info >= (3, 11):  # noqa: UP036 - tomli where tomllib is missing
    import tomllib
else:  # pragma: no cover - only where tomllib is missing
    import tomli as tomllib


def load(path: str | os.PathLike[str], resolver: Resolver | None = None) -> Config:
    """Read and validate a config file; raises ConfigError naming file, key and problem.
    `resolver` turns members' host names into addresses (the system's, unless the master's
    re-resolution, hbfork.master.reresolve, hands the addresses it just found)."""
    name = str(path)
    try:
        with open(name, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(name, "", "no such file") from None
    except OSError as err:
        raise ConfigError(name, "", f"cannot read: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(name, "", f"not valid TOML: {err}") from None
    # Members by host name become their addresses (a name left out is said in the log); what
    # each name gave is kept in Config.names, for resolve_interval.
    names: dict[str, tuple[str, ...]] = {}
    resolve = resolver or system_resolver

    def recording(host: str) -> list[str]:
        names[host] = ()
        found = resolve(host)
        names[host] = tuple(found)
        return found

    for warning in resolve_names(document, name, recording):
        log.warning("%s: %s", name, warning)
    config = from_document(document, name, str(Path(name).resolve().parent))
    check_spool_dir(config)
    return replace(config, names=tuple(names.items()))


def check_spool_dir(config: Config) -> None:
    """[http] response_spool_dir must be a directory we can write to (when spooling is on)."""
    where = config.http.response_spool_dir
    if not where or config.http.response_spool_max <= 0:
        return
    if not os.path.isdir(where):
        raise ConfigError(config.path, "[http] response_spool_dir", f"{where} is not a directory")
    if not os.access(where, os.W_OK | os.X_OK):
        raise ConfigError(config.path, "[http] response_spool_dir",
                          f"{where} is not writable (by uid {os.getuid()})")
