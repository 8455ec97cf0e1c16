"""Named pools, routes and sticky sessions with real `hbfork run` and `hbfork backend`."""

from __future__ import annotations

import http.client
import json
import subprocess
from collections import Counter

import pytest

from tests.integration.harness import HBFORK, free_port, get, wait_until

STICKY_REQUESTS = 10_000


def addresses(*ips: str) -> list[tuple[str, int]]:
    return [(ip, free_port(ip)) for ip in ips]


def start(cluster, pools, routes, backends, **sections):
    """A proxy with `pools` and `routes`, then `backends` {name: (ip, port)} beating to it."""
    proxy = cluster.proxy([], pool=pools, route=routes, **sections)
    started = {name: cluster.backend(name, 10, heartbeat=proxy.heartbeat_address, ip=ip,
                                     port=port) for name, (ip, port) in backends.items()}
    proxy.wait_eligible(*(b.address for b in started.values()))
    return proxy, started


def app_pool(a, b, **options):
    return {"name": "app", "stickysession": "JSESSIONID|jsessionid", **options,
            "member": [{"address": f"{a[0]}:{a[1]}", "route": "n1"},
                       {"address": f"{b[0]}:{b[1]}", "route": "n2"}]}


def request(proxy, path, host="www.example.com", headers=None, conn=None):
    response, body, conn = get(proxy.url, path, conn=conn,
                               headers={"Host": host, **(headers or {})})
    return response, body, conn


def test_hosts_paths_exclusions_and_rewrites(cluster):
    a, b, c = addresses("127.0.0.2", "127.0.0.3", "127.0.0.4")
    pools = [app_pool(a, b), {"name": "api", "members": [f"{c[0]}:{c[1]}"]}]
    routes = [{"path": "/app/static", "pass": False},
              {"host": "www.example.com", "path": "/app/", "pool": "app",
               "strip_prefix": True},
              {"host": "*.example.com", "path": "/", "pool": "api", "preserve_host": False},
              {"regex": "^/v[0-9]+/", "pool": "api"}]
    proxy, _ = start(cluster, pools, routes, {"a": a, "b": b, "c": c})
    response, body, conn = request(proxy, "/app/x/y?headers=1")
    seen = json.loads(body)
    assert response.status == 200 and seen["backend"] in ("a", "b")
    assert seen["head"].startswith("GET /x/y?headers=1 HTTP/1.1\r\n")
    assert "Host: www.example.com\r\n" in seen["head"]
    response, body, conn = request(proxy, "/app/static/logo.png", conn=conn)
    assert response.status == 404 and b"not served here" in body
    response, body, conn = request(proxy, "/other?headers=1", host="API.Example.com.:8080",
                                   conn=conn)
    seen = json.loads(body)
    assert seen["backend"] == "c" and f"Host: {c[0]}:{c[1]}\r\n" in seen["head"]
    response, body, conn = request(proxy, "/v2/users", host="elsewhere.test", conn=conn)
    assert response.getheader("X-Backend") == "c"
    response, body, conn = request(proxy, "/nothing", host="elsewhere.test", conn=conn)
    assert response.status == 404 and b"no route" in body
    # Tricks that would slip past the exclusion if matching and forwarding disagreed.
    for trick in ("/app/x/../static/a", "/app/%2e%2e/app/static/a", "//app//static/a",
                  "/app;x/static/a", "/app/static;jsessionid=1/a"):
        response, _, conn = request(proxy, trick, conn=conn)
        assert response.status == 404, trick
    response, _, conn = request(proxy, "/app/a%2fb", conn=conn)
    assert response.status == 404
    conn.close()
    routes_seen = {r["index"]: r["requests"] for r in proxy.status()["routes"]}
    assert routes_seen[1] >= 6 and routes_seen[2] == 1 and routes_seen[4] == 1


def test_sticky_cookie_keeps_every_request_on_its_member(cluster):
    a, b = addresses("127.0.0.2", "127.0.0.3")
    routes = [{"path": "/", "pool": "app"}]
    proxy, _ = start(cluster, [app_pool(a, b)], routes, {"a": a, "b": b})
    conn = None
    counts: Counter[str] = Counter()
    for _ in range(STICKY_REQUESTS):
        response, _, conn = request(proxy, "/", headers={"Cookie": "JSESSIONID=X9.n2"},
                                    conn=conn)
        counts[response.getheader("X-Backend") if response.status == 200
               else str(response.status)] += 1
    conn.close()
    assert counts == {"b": STICKY_REQUESTS}
    pool = next(p for p in proxy.status()["pools"] if p["name"] == "app")
    assert pool["sticky_hits"] == STICKY_REQUESTS and pool["sticky_lost"] == 0


@pytest.mark.parametrize("nofailover", [False, True])
def test_sticky_member_killed(cluster, nofailover):
    a, b = addresses("127.0.0.2", "127.0.0.3")
    routes = [{"path": "/", "pool": "app"}]
    proxy, backends = start(cluster, [app_pool(a, b, nofailover=nofailover)], routes,
                            {"a": a, "b": b})
    backends["b"].stop()
    statuses: Counter[int] = Counter()
    served: Counter[str] = Counter()
    for _ in range(200):
        response, _, conn = request(proxy, "/", headers={"Cookie": "JSESSIONID=X9.n2"})
        conn.close()
        statuses[response.status] += 1
        served[response.getheader("X-Backend") or "-"] += 1
    if nofailover:
        assert statuses == {503: 200}
    else:
        assert statuses == {200: 200} and served == {"a": 200}


def test_route_cookie_set_by_hbfork(cluster):
    a, b = addresses("127.0.0.2", "127.0.0.3")
    pool = app_pool(a, b)
    del pool["stickysession"]
    pool["sticky_cookie"] = "ROUTEID"
    proxy, _ = start(cluster, [pool], [{"path": "/", "pool": "app"}], {"a": a, "b": b})
    response, _, conn = request(proxy, "/")
    cookie = response.getheader("Set-Cookie")
    first = response.getheader("X-Backend")
    route = {"a": "n1", "b": "n2"}[first]
    assert cookie == f"ROUTEID=.{route}; Path=/; HttpOnly"
    for _ in range(50):
        response, _, conn = request(proxy, "/", headers={"Cookie": cookie.split(";")[0]},
                                    conn=conn)
        assert response.getheader("X-Backend") == first
        assert response.getheader("Set-Cookie") is None
    conn.close()


def test_proxypassreverse_and_cookie_path(cluster):
    a, b = addresses("127.0.0.2", "127.0.0.3")
    routes = [{"host": "www.example.com", "path": "/shop/", "pool": "app", "strip_prefix": True,
               "reverse": True, "reverse_cookie_path": ["/", "/shop/"]}]
    proxy, _ = start(cluster, [app_pool(a, b)], routes, {"a": a, "b": b})
    for ip, port in (a, b):
        response, _, conn = request(
            proxy, f"/shop/x?location=http://{ip}:{port}/login&setcookie=s%3D1%3B%20Path%3D/",
            headers={"Cookie": f"JSESSIONID=A.{'n1' if (ip, port) == a else 'n2'}"})
        conn.close()
        assert response.getheader("Location") == "http://www.example.com/shop/login"
        assert response.getheader("Set-Cookie") == "s=1; Path=/shop/"


def test_drain_in_one_pool_keeps_its_sessions(cluster):
    a, b = addresses("127.0.0.2", "127.0.0.3")
    proxy, _ = start(cluster, [app_pool(a, b)], [{"path": "/", "pool": "app"}],
                     {"a": a, "b": b})
    result = subprocess.run([*HBFORK, "ctl", "-c", str(proxy.config_path), "drain",
                             f"app/{a[0]}:{a[1]}"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "app/" in result.stdout and "drained" in result.stdout

    def drained() -> bool:
        pool = next(p for p in proxy.status()["pools"] if p["name"] == "app")
        return any(m["state"] == "drained in pool" for m in pool["members"])
    wait_until(drained, 5, message="the drain to show")
    plain, sticky = Counter(), Counter()
    for _ in range(100):
        response, _, conn = request(proxy, "/")
        conn.close()
        plain[response.getheader("X-Backend")] += 1
        response, _, conn = request(proxy, "/", headers={"Cookie": "JSESSIONID=Z.n1"})
        conn.close()
        sticky[response.getheader("X-Backend")] += 1
    assert plain == {"b": 100} and sticky == {"a": 100}


def test_metrics_and_status_show_pools_and_routes(cluster):
    a, b = addresses("127.0.0.2", "127.0.0.3")
    proxy, _ = start(cluster, [app_pool(a, b)], [{"path": "/", "pool": "app"}],
                     {"a": a, "b": b})
    for _ in range(5):
        _, _, conn = request(proxy, "/")
        conn.close()

    def metrics() -> str:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.status_port, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return text

    # Workers publish their counts to the table on their own tick, not per request: poll.
    pool_count = 'hbfork_pool_requests_total{pool="app",code="2xx"} 5'
    wait_until(lambda: pool_count in metrics(), 10, message="the pool's 5 requests in /metrics")
    text = metrics()
    assert pool_count in text
    assert 'hbfork_route_requests_total{route="*/",index="1"} 5' in text
    assert f'hbfork_pool_member_eligible{{pool="app",member="{a[0]}:{a[1]}",route="n1"}} 1' \
        in text
    result = subprocess.run([*HBFORK, "status", "-c", str(proxy.config_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "POOL app" in result.stdout and "ROUTE" in result.stdout


def test_invalid_routes_on_reload_keep_the_old_config(cluster):
    a, b = addresses("127.0.0.2", "127.0.0.3")
    proxy, _ = start(cluster, [app_pool(a, b)], [{"path": "/", "pool": "app"}],
                     {"a": a, "b": b})
    proxy.config["route"] = [{"path": "/", "pool": "missing"}]
    proxy.write_config()
    check = subprocess.run([*HBFORK, "check", "-c", str(proxy.config_path)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 2
    assert "[[route]] #1 pool: no pool is named 'missing'" in check.stderr
    generation = proxy.status()["master"]["config_generation"]
    proxy.send_signal(1)  # SIGHUP
    wait_until(lambda: "reload failed" in proxy.output(), 10, message="the reload to fail")
    assert proxy.status()["master"]["config_generation"] == generation
    response, _, conn = request(proxy, "/")
    conn.close()
    assert response.status == 200
