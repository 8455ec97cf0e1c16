"""Real Apache against hbfork running what `hbfork import-apache` made of the same mod_headers
rules (tests/data/apache/edge-headers.conf): the same requests go to both fronts, and the
fields the rules touch must be the same in what the member received and in what the client got,
on members' answers and on each front's own 503 (`Header always` only).

Run as a script inside a lab namespace, this file is also the HTTP client the test uses
(`python test_apache_headers.py exchange JSON`), so that no test traffic leaves the lab.
"""

from __future__ import annotations

import http.client
import json
import sys
from typing import Any

import pytest
from labkit import GROUP, Launcher
from test_apache_routing import APACHE, HBFORK, start_fronts

pytestmark = [pytest.mark.netns, pytest.mark.apache, pytest.mark.slow]

MEMBER = "10.213.0.11:8080"
REQUEST_FIELDS = ("x-env", "x-debug", "x-tags", "x-api", "x-client-version")
RESPONSE_FIELDS = ("x-frame-options", "x-content-type-options", "cache-control", "x-backend",
                   "location", "x-site", "vary", "x-api-version")


@pytest.fixture(scope="module")
def member(apache: None, module_launcher: Launcher) -> str:
    module_launcher.process("b1", "backend-b1-8080", [
        sys.executable, "-m", "hbfork", "backend", "--listen", MEMBER, "--heartbeat", GROUP,
        "--capacity", "8"])
    return MEMBER


def exchange(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """(Run inside the lab.) One GET per request, each on its own connection: the status,
    every response field (names lower-cased, in order) and the body."""
    out = []
    for request in batch:
        conn = http.client.HTTPConnection(request["front"], 80, timeout=10)
        try:
            conn.request("GET", request["path"], headers={
                "Host": "www.example.com", "Connection": "close", **request["headers"]})
            response = conn.getresponse()
            out.append({"status": response.status,
                        "fields": [(n.lower(), v) for n, v in response.getheaders()],
                        "body": response.read().decode("utf-8", "replace")})
        finally:
            conn.close()
    return out


def both(launcher: Launcher, requests: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    batch = [{**r, "front": front} for front in (APACHE, HBFORK) for r in requests]
    done = launcher.lab.run("front", [sys.executable, __file__, "exchange", json.dumps(batch)],
                            capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    return answers[:len(requests)], answers[len(requests):]


def touched(fields: list[tuple[str, str]], names: tuple[str, ...]) -> list[tuple[str, str]]:
    """The fields named `names`, by name (the order of fields of one name kept: Apache sends
    its `always` table's fields first, which no client can tell apart)."""
    return sorted(((n, v) for n, v in fields if n in names), key=lambda field: field[0])


def member_saw(answer: dict) -> list[tuple[str, str]]:
    assert answer["status"] == 200, answer
    head = json.loads(answer["body"])["head"].split("\r\n")[1:]
    fields = [(n.strip().lower(), v.strip()) for n, _, v in (line.partition(":")
                                                              for line in head if line)]
    return touched(fields, REQUEST_FIELDS)


REQUESTS = [
    {"path": "/page?headers=1", "headers": {"X-Debug": "1", "X-Tags": "red, blue"}},
    {"path": "/api/items?headers=1&location=http://www.example.com/a/http://x",
     "headers": {"X-Tags": "red", "X-Client-Version": "7"}},
    {"path": "/api/other?headers=1", "headers": {}},
    {"path": "/down/x", "headers": {}},
]


def test_the_same_rules_give_the_same_fields(member: str, launcher: Launcher) -> None:
    start_fronts(launcher, "edge-headers", {member})
    apache, hbfork = both(launcher, REQUESTS)
    for index in range(3):
        assert member_saw(hbfork[index]) == member_saw(apache[index]), index
        assert touched(hbfork[index]["fields"], RESPONSE_FIELDS) == \
            touched(apache[index]["fields"], RESPONSE_FIELDS), index
    # what the rules made, spelled out once
    assert ("x-env", "prod, www site") in member_saw(hbfork[0])
    assert ("x-tags", "red, blue") in member_saw(hbfork[0])  # merge: already there
    assert ("x-client-version", "7") in member_saw(hbfork[1])
    assert ("x-backend", "member-11-8080") in touched(hbfork[0]["fields"], RESPONSE_FIELDS)
    assert ("location", "https://www.example.com/a/https://x") in \
        touched(hbfork[1]["fields"], RESPONSE_FIELDS)
    # each front's own answer (Apache 503; hbfork 502, its member never having beaten, is
    # still tried once while in startup grace): the `always` rules only
    assert apache[3]["status"] == 503 and hbfork[3]["status"] in (502, 503)
    for answers in (apache, hbfork):
        got = dict(answers[3]["fields"])
        assert got["x-frame-options"] == "DENY" and got["x-content-type-options"] == "nosniff"
        assert "x-site" not in got
    assert "cache-control" not in dict(apache[3]["fields"])
    assert dict(hbfork[3]["fields"])["cache-control"] == "no-store"  # its own, not appended


if __name__ == "__main__" and sys.argv[1:2] == ["exchange"]:
    json.dump(exchange(json.loads(sys.argv[2])), sys.stdout)
