"""Header rules and request IDs through a real hbfork and real `hbfork backend` members, on
both HTTP paths: request rules reach the member, response rules the client, `always` rules
hbfork's own 503, and request IDs are made, passed through from a trusted client and replaced
from an untrusted one (issue 26 items 1 and 4)."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.integration.harness import free_port, get, wait_until

RULES = {
    "request_headers": ["set X-Env prod", "unset X-Drop"],
    "response_headers": ["unset X-Backend", "always set X-Frame-Options DENY",
                         "set X-Served-By hbfork"],
}


@pytest.fixture(params=["fast path", "general path"], autouse=True)
def http_path(request, cluster) -> bool:
    fast = request.param == "fast path"
    cluster.http_defaults["fast_path"] = fast
    return fast


def one_member(cluster, **sections):
    proxy = cluster.proxy([], heartbeat={"discover": True}, **sections)
    backend = cluster.backend("solo", 10, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    return proxy, backend


def member_fields(body: bytes) -> dict[str, list[str]]:
    """The fields of the head the member received (hbfork backend ?headers=1)."""
    head = json.loads(body)["head"]
    out: dict[str, list[str]] = {}
    for line in head.split("\r\n")[1:]:
        if line:
            name, _, value = line.partition(":")
            out.setdefault(name.lower(), []).append(value.strip())
    return out


def requests_on_one_connection(proxy, count: int, headers: dict[str, str]
                               ) -> list[tuple[http.client.HTTPResponse, bytes]]:
    conn = None
    out = []
    for _ in range(count):
        response, body, conn = get(proxy.url, "/?headers=1", conn=conn, headers=headers)
        out.append((response, body))
    assert conn is not None
    conn.close()
    return out


def fast_path_count(proxy) -> int:
    return proxy.status()["totals"]["fast_path"]


def test_rules_change_what_members_and_clients_see(cluster, http_path) -> None:
    proxy, _ = one_member(cluster, http=RULES,
                          request_id={"header": ""})
    before = fast_path_count(proxy)
    for response, body in requests_on_one_connection(proxy, 4, {"X-Drop": "1"}):
        assert response.status == 200
        seen = member_fields(body)
        assert seen["x-env"] == ["prod"] and "x-drop" not in seen
        assert response.getheader("X-Backend") is None
        assert response.getheader("X-Frame-Options") == "DENY"
        assert response.getheader("X-Served-By") == "hbfork"
    # requests after the first of the connection take the fast path, rules and all
    wait_until(lambda: (fast_path_count(proxy) - before >= 3) if http_path
               else fast_path_count(proxy) == before, 5, message="the fast path count")


def test_always_rules_reach_hbforks_own_503(cluster) -> None:
    proxy = cluster.proxy([], heartbeat={"discover": True}, http=RULES,
                          request_id={"enabled": True})
    response, _, conn = get(proxy.url, "/")  # no member yet: hbfork answers itself
    conn.close()
    assert response.status == 503
    assert response.getheader("X-Frame-Options") == "DENY"  # always
    assert response.getheader("X-Served-By") is None        # members' responses only
    assert response.getheader("X-Request-ID")  # the ID comes back on our answers too


def test_request_ids_are_made_for_each_request_and_sent_back(cluster) -> None:
    proxy, _ = one_member(cluster, request_id={"enabled": True})
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    ids = []
    for response, body in requests_on_one_connection(proxy, 3, {"traceparent": parent,
                                                                "X-Request-ID": "mine"}):
        seen = member_fields(body)
        assert len(seen["x-request-id"]) == 1 and seen["x-request-id"] != ["mine"]
        assert response.getheader("X-Request-ID") == seen["x-request-id"][0]
        assert seen["traceparent"] == [parent]
        ids.append(seen["x-request-id"][0])
    assert len(set(ids)) == 3


@pytest.mark.parametrize(("trusted", "kept"), [(["127.0.0.0/8"], True), (["10.0.0.0/8"], False)])
def test_a_clients_id_is_passed_through_only_when_trusted(cluster, trusted, kept) -> None:
    proxy, _ = one_member(cluster, request_id={"enabled": True, "trusted": trusted,
                                                 "header": "X-Trace-ID"})
    for response, body in requests_on_one_connection(proxy, 2, {"X-Trace-ID": "edge-42"}):
        seen = member_fields(body)
        assert (seen["x-trace-id"] == ["edge-42"]) is kept
        assert response.getheader("X-Trace-ID") == seen["x-trace-id"][0]
        assert "x-request-id" not in seen


def test_a_listeners_rules_apply_after_the_servers_and_only_there(cluster) -> None:
    port = free_port()
    proxy, _ = one_member(cluster, http={"request_headers": ["set X-Order http"]},
                          listen=[{"address": f"127.0.0.1:{port}",
                                   "request_headers": ["append X-Order listen"],
                                   "response_headers": ["set X-Listener alt"]}])
    response, body, conn = get(f"http://127.0.0.1:{port}", "/?headers=1")
    conn.close()
    assert member_fields(body)["x-order"] == ["http, listen"]
    assert response.getheader("X-Listener") == "alt"
    response, body, conn = get(proxy.url, "/?headers=1")
    conn.close()
    assert member_fields(body)["x-order"] == ["http"]
    assert response.getheader("X-Listener") is None


def test_request_ids_are_off_by_default(cluster) -> None:
    proxy, _ = one_member(cluster)
    for response, body in requests_on_one_connection(proxy, 2, {}):
        assert "x-request-id" not in member_fields(body)
        assert response.getheader("X-Request-ID") is None
