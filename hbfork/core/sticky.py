"""Sticky sessions the way mod_proxy_balancer finds them. Pure: strings in, a route out.

`stickysession=JSESSIONID|jsessionid` names a cookie and a URL parameter. The URL is searched
first (Apache's get_path_param): the first occurrence of `jsessionid=` anywhere in the path and
query, its value running to the next `?` or `&`. Then the Cookie header (get_cookie_param): a
`JSESSIONID` that starts the header or follows `;`, `,` or a space, optional spaces, `=`, and a
value running to the next `;` or `,`. The route is the part of the value after the first
`stickysessionsep` (default `.`): `ABC123.node2` is route `node2`; a value without the
separator, or with nothing after it, has no route. Anything else is simply "no route".
"""

from __future__ import annotations

_SPACE = " \t\r\n\f\v"


def value_in_url(url: str, name: str) -> str | None:
    """get_path_param: the value of the first `name=` in `url`, up to `?` or `&`."""
    at = url.find(name)
    while at >= 0:
        start = at + len(name)
        if url.startswith("=", start) and start + 1 < len(url):
            value = url[start + 1:]
            return _token(value, "?&")
        at = url.find(name, at + 1)
    return None


def _token(text: str, delimiters: str) -> str | None:
    """apr_strtok's first token: leading delimiters skipped, up to the next one."""
    start = 0
    while start < len(text) and text[start] in delimiters:
        start += 1
    end = start
    while end < len(text) and text[end] not in delimiters:
        end += 1
    return text[start:end] or None


def value_in_cookie(cookie: str, name: str) -> str | None:
    """get_cookie_param: the value of cookie `name` in a Cookie header."""
    at = cookie.find(name)
    while at >= 0:
        if at == 0 or cookie[at - 1] in ";," or cookie[at - 1] in _SPACE:
            start = at + len(name)
            while start < len(cookie) and cookie[start] in _SPACE:
                start += 1
            if cookie.startswith("=", start) and start + 1 < len(cookie):
                value = cookie[start + 1:]
                for stop in ";,":
                    cut = value.find(stop)
                    if cut >= 0:
                        value = value[:cut]
                return value
        at = cookie.find(name, at + 1)
    return None


def route_of(value: str | None, separator: str) -> str | None:
    """The route in a session value: after the first separator (the whole value if none is
    configured); None when there is none."""
    if value is None:
        return None
    if separator:
        cut = value.find(separator)
        if cut < 0:
            return None
        value = value[cut + 1:]
    return value or None


def find_route(url: str, cookies: list[str], cookie_name: str, param_name: str,
               separator: str) -> str | None:
    """The route a request asks for: in its URL first, then in its Cookie headers."""
    value = value_in_url(url, param_name) if param_name else None
    if value is None and cookie_name:
        for header in cookies:
            value = value_in_cookie(header, cookie_name)
            if value is not None:
                break
    return route_of(value, separator)


def route_cookie(name: str, route: str, separator: str, path: str, httponly: bool,
                 secure: bool, samesite: str) -> bytes:
    """The Set-Cookie value hbfork sends for `sticky_cookie`: the route behind the separator,
    so that find_route reads it back (Apache's `ROUTEID=.node2` pattern)."""
    parts = [f"{name}={separator}{route}", f"Path={path}"]
    if httponly:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    if samesite:
        parts.append(f"SameSite={samesite}")
    return "; ".join(parts).encode()
