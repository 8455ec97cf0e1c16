"""Value parsers for settings, and `setting()`, the one way a setting is declared.

Each parser takes the raw TOML value and returns the typed value or raises ValueError with a
readable message; the loader turns that into a ConfigError naming file, key and problem.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from hbfork.core.addresses import Endpoint, IPNetwork, parse_endpoint, parse_network

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")  # a settings dataclass

MAX_WORKERS = 64
INT32_MAX = 2**31 - 1
ROUTE_TOKEN = re.compile(r"[\x21-\x7e]{1,64}")  # printable, no space: it travels in cookies


def integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer from {low} to {high}, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def seconds(low: float = 0.0, high: float = 86400.0, *,
            allow_zero: bool = False) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number of seconds, got {value!r}")
        if value == 0 and allow_zero:
            return 0.0
        if not low < value <= high:
            raise ValueError(f"must be more than {low:g} and at most {high:g} seconds, got {value}")
        return float(value)

    return parse


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def text_value(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def optional_text(value: Any) -> str | None:
    return text_value(value) or None


def choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(map(repr, options))}, got {value!r}")
        return str(value)

    return parse


def endpoint(value: Any) -> Endpoint:
    return parse_endpoint(text_value(value))


def optional_endpoint(value: Any) -> Endpoint | None:
    return parse_endpoint(value) if text_value(value) else None


def endpoint_list(value: Any) -> tuple[Endpoint, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError("expected a list of addresses like [\"127.0.0.1:8080\"]")
    endpoints = tuple(endpoint(item) for item in value)
    if len(set(endpoints)) != len(endpoints):
        raise ValueError("lists the same address twice")
    return endpoints


def network_list(value: Any) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list):
        raise ValueError("expected a list of CIDRs like [\"10.0.0.0/8\"]")
    return tuple(parse_network(item) for item in value)


def optional_network_list(value: Any) -> tuple[IPNetwork, ...] | None:
    return network_list(value)


HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")  # an RFC 9110 token


def header_name(value: Any) -> str:
    text = text_value(value)
    if not HEADER_NAME.fullmatch(text):
        raise ValueError(f"expected an HTTP header name like \"X-Forwarded-For\", got {text!r}")
    return text


def worker_count(value: Any) -> int:
    if value == "auto":
        return max(1, min(os.cpu_count() or 1, MAX_WORKERS))
    return integer(1, MAX_WORKERS)(value)


def setting(default: Any, parse: Callable[[Any], Any], help: str, shown: str = "",
            key: str = "") -> Any:
    """Declare one setting: its default (already typed), its parser and its help text.

    `shown` is the default as the configuration reference and `hbfork check` print it, when repr
    would mislead;
    `key` is its name in the file when that is not the field's (a Python keyword, say).
    """
    return field(default=default,
                 metadata={"parse": parse, "help": help, "shown": shown, "key": key})


def key_of(declared: Any) -> str:
    """The file's name for a declared field."""
    return str(declared.metadata["key"] or declared.name)


class BadSetting(ValueError):
    """A value in a table that cannot be taken; the loader adds file and section."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


def build(cls: type[T], table: dict[str, Any], **fixed: Any) -> T:
    """A settings object from one TOML table; `fixed` fields are given, not read. Raises
    BadSetting for the first unknown key or bad value."""
    declared = {key_of(f): f for f in fields(cls) if f.name not in fixed}
    values = dict(fixed)
    for key, raw in table.items():
        if key not in declared:
            close = difflib.get_close_matches(key, list(declared), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise BadSetting(key, f"unknown key{hint}")
        try:
            values[declared[key].name] = declared[key].metadata["parse"](raw)
        except ValueError as err:
            raise BadSetting(key, str(err)) from None
    return cls(**values)


def route_token(value: Any) -> str:
    text = text_value(value)
    if text and not ROUTE_TOKEN.fullmatch(text):
        raise ValueError(f"a route is up to 64 printable characters without spaces, got "
                         f"{text!r}")
    return text


def grace(value: Any) -> float | None:
    """Seconds, or "max_age" (None: one max_age, whatever it is set to)."""
    if value == "max_age":
        return None
    return seconds(0, 3600, allow_zero=True)(value)
