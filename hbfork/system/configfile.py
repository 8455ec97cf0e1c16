"""Reading the config file: the only place the TOML file is opened."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from hbfork.core.config import Config, from_document
from hbfork.core.errors import ConfigError
from hbfork.core.member_names import resolve_names
from hbfork.system.resolve import system_resolver

log = logging.getLogger("hbfork.config")

if sys.version_info >= (3, 11):  # noqa: UP036 - tomli where tomllib is missing
    import tomllib
else:  # pragma: no cover - only where tomllib is missing
    import tomli as tomllib


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raises ConfigError naming file, key and problem."""
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
    # Members by host name become their addresses (a name left out is said in the log).
    for warning in resolve_names(document, name, system_resolver):
        log.warning("%s: %s", name, warning)
    return from_document(document, name, str(Path(name).resolve().parent))
