"""Real Apache fronts against hbfork running what `hbfork import-apache` made of their configs.

Each of the three configs in tests/data/apache (a Tomcat cluster with JSESSIONID routes, two
name-based vhosts with static exclusions, an API with a hot standby on a heartbeat front) runs
as it is in a real Apache on the lab's front (10.213.0.1:80), and translated by import-apache
in hbfork on the front's loopback (127.0.0.1:80; only listen, workers and log files are changed
for the lab). The same requests go to both; the tests compare which member answered (every
`hbfork backend` says who it is in X-Backend), what the member was sent (its `headers=1`
answer), the status, and the Location and Set-Cookie headers that came back. Where hbfork
deliberately differs from Apache, the test asserts the difference (docs/apache.md:
"Differences from Apache").

The backends are shared by the module: nine `hbfork backend`s, three ports on each lab host,
heartbeating to the lab's multicast group (hbfork needs the heartbeats; the Apache fronts that
balance by requests do not, the API's lbmethod=heartbeat front reads them with
mod_heartmonitor).

Run as a script inside a lab namespace, this file is also the HTTP client the tests use
(`python test_apache_routing.py exchange JSON`), so that no test traffic leaves the lab.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from labkit import (
    APACHE_DATA,
    GROUP,
    Hbfork,
    Launcher,
    patch,
    unprivileged_user,
    wait_for,
)

from hbfork.core import config as config_module
from hbfork.core.members import ELIGIBLE

pytestmark = [pytest.mark.netns, pytest.mark.apache, pytest.mark.slow]

SUBNET = "10.213.0"              # the lab's addresses, which the configs name as they are
APACHE = f"{SUBNET}.1"           # Listen ${HB_ADDR}:80 in every config
HBFORK = "127.0.0.1"             # the front's loopback: same namespace, same port 80
PORTS = (8080, 8081, 8082)
HOSTS = {"b1": f"{SUBNET}.11", "b2": f"{SUBNET}.12", "b3": f"{SUBNET}.13"}
ROOT = Path(__file__).resolve().parents[2]


def member(host: str, port: int) -> str:
    return f"{HOSTS[host]}:{port}"


# --- the lab


@pytest.fixture(scope="module")
def backends(apache: None, module_launcher: Launcher) -> set[str]:
    """Nine `hbfork backend`s (X-Backend = their address), beating to the lab's group."""
    lab = module_launcher.lab
    assert {h: lab.host(h).address for h in HOSTS} == HOSTS, "the configs name these addresses"
    started = set()
    for host in HOSTS:
        for port in PORTS:
            address = member(host, port)
            module_launcher.process(host, f"backend-{host}-{port}", [
                sys.executable, "-m", "hbfork", "backend", "--listen", address,
                "--heartbeat", GROUP, "--capacity", "8"])
            started.add(address)
    return started


def start_fronts(launcher: Launcher, conf: str, wanted: set[str]) -> Hbfork:
    """Apache with tests/data/apache/CONF, and hbfork with its translation; returns hbfork
    once the members in `wanted` are eligible in its table."""
    user, group = unprivileged_user() or ("nobody", "nogroup")
    variables = {"HB_ADDR": APACHE, "HB_GROUP": GROUP, "HB_USER": user, "HB_GROUP_NAME": group}
    front = launcher.apache("front", f"apache-{conf}", APACHE_DATA / f"{conf}.conf", **variables)
    done = subprocess.run([sys.executable, "-m", "hbfork", "import-apache",
                           str(APACHE_DATA / f"{conf}.conf")], capture_output=True, text=True,
                          env={**os.environ, **variables, "HB_DIR": str(front.dir)},
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "0 directive(s) not translated" in done.stderr, done.stdout
    hbfork = launcher.hbfork("front", f"hbfork-{conf}", lambda d: lab_config(done.stdout, d))
    wait_for(lambda: _eligible(hbfork, wanted), 10,
             lambda: f"members not eligible: {hbfork.members()}\n{hbfork.output()}")
    return hbfork


def _eligible(hbfork: Hbfork, wanted: set[str]) -> bool:
    records = hbfork.members()
    return all(a in records and records[a].reason == ELIGIBLE for a in wanted)


def lab_config(text: str, directory: Path) -> str:
    """The translation with what the lab needs changed: hbfork on the front's loopback, one
    worker, running as root (the lab's files are root's), logs and pid file in `directory`."""
    text = patch(text, "proxy", {"listen": [f"{HBFORK}:80"], "workers": 1, "user": None,
                                 "group": None, "allow_root": True, "shutdown_timeout": 2,
                                 "pidfile": str(directory / "hbfork.pid")})
    text = patch(text, "heartbeat", {"listen": GROUP})
    text = patch(text, "status", {"listen": ""})
    text = patch(text, "log", {"level": "info", "error": str(directory / "hbfork.log")})
    config_module.loads(text)  # fail here, not in a log, if the patch broke it
    return text


# --- requests, sent the same way to both fronts


def both(launcher: Launcher, requests: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """Each request to Apache and to hbfork: (Apache's answers, hbfork's answers)."""
    batch = [{**r, "front": front} for front in (APACHE, HBFORK) for r in requests]
    done = launcher.lab.run("front", [sys.executable, __file__, "exchange", json.dumps(batch)],
                            capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    return answers[:len(requests)], answers[len(requests):]


def get(path: str, host: str, times: int = 1, **headers: str) -> list[dict[str, Any]]:
    return [{"path": path, "host": host, "headers": headers}] * times


def exchange(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """(Run inside the lab.) One GET per request, each on its own connection."""
    out = []
    for request in batch:
        conn = http.client.HTTPConnection(request["front"], 80, timeout=10)
        try:
            conn.request("GET", request["path"], headers={
                "Host": request["host"], "Connection": "close", **request["headers"]})
            response = conn.getresponse()
            body = response.read().decode("utf-8", "replace")
            out.append({"status": response.status, "backend": response.getheader("X-Backend"),
                        "location": response.getheader("Location"),
                        "cookies": response.msg.get_all("Set-Cookie") or [], "body": body})
        finally:
            conn.close()
    return out


def backends_of(answers: list[dict]) -> Counter[str]:
    return Counter(a["backend"] for a in answers if a["status"] == 200)


def statuses(answers: list[dict]) -> list[int]:
    return [a["status"] for a in answers]


def sent(answer: dict) -> tuple[str, str]:
    """(request target, Host) as the member received them (its `headers=1` answer)."""
    assert answer["status"] == 200, answer
    head = json.loads(answer["body"])["head"].split("\r\n")
    host = next(line.split(":", 1)[1].strip() for line in head if line.lower()
                .startswith("host:"))
    return head[0].split(" ")[1], host


def cookie(answer: dict) -> str:
    """The one Set-Cookie of an answer, attribute names lower-cased (Apache and hbfork
    spell `Path` differently; the value and the attributes must be the same)."""
    assert len(answer["cookies"]) == 1, answer
    first, *attributes = [part.strip() for part in answer["cookies"][0].split(";")]
    named = [a.split("=", 1) for a in attributes]
    return "; ".join([first, *(f"{n[0].lower()}={n[1]}" if len(n) == 2 else n[0].lower()
                               for n in named)])


def same_members(apache: list[dict], hbfork: list[dict], pool: set[str]) -> None:
    """Both fronts answered 200 from members of `pool` only."""
    for who, answers in (("apache", apache), ("hbfork", hbfork)):
        assert statuses(answers) == [200] * len(answers), (who, answers)
        assert set(backends_of(answers)) <= pool, (who, backends_of(answers))


# --- 1. a Tomcat cluster with JSESSIONID routes


TOMCAT = {f"node{n}": member(f"b{n}", 8080) for n in (1, 2, 3)}


def test_tomcat_cluster(backends: set[str], launcher: Launcher) -> None:
    start_fronts(launcher, "tomcat-cluster", set(TOMCAT.values()))
    shop = "shop.example.com"
    requests = [
        *get("/", shop, 12),                                               # 0-11
        *get("/", shop, 6, Cookie="lang=de; JSESSIONID=8C2A.node2"),        # 12-17
        *get("/cart;jsessionid=77F1.node3", shop, 6),                      # 18-23
        *get("/cart?jsessionid=77F1.node1", shop, 9),                      # 24-32
        *get("/", shop, 6, Cookie="JSESSIONID=8C2A.node9"),                 # 33-38
        *get("/manager/html", shop), *get("/manager;x=1", shop),           # 39, 40
        *get(f"/login?location=http://{TOMCAT['node2']}/shop/home", shop),  # 41
        *get("/login?setcookie=JSESSIONID%3D8C2A.node1%3B%20Path%3D%2Fshop%3B%20HttpOnly",
             shop),                                                        # 42
        *get("/cart?headers=1", shop),                                     # 43
        *get(f"/home?location=http://{TOMCAT['node2']}/shop", shop),        # 44
    ]
    apache, hbfork = both(launcher, requests)
    pool = set(TOMCAT.values())
    for answers in (apache, hbfork):
        same_members(answers[:12], answers[:12], pool)
        assert len(backends_of(answers[:12])) >= 2   # balanced, not pinned
        # sticky by cookie, by ;jsessionid= in the path and ?jsessionid= in the query: every
        # request on its node
        assert backends_of(answers[12:18]) == {TOMCAT["node2"]: 6}
        assert backends_of(answers[18:24]) == {TOMCAT["node3"]: 6}
        assert backends_of(answers[24:33]) == {TOMCAT["node1"]: 9}
        # a route no member has is no route: balanced, never an error
        same_members(answers[33:39], answers[33:39], pool)
        assert answers[39]["status"] == 404                     # ProxyPass /manager !
        # ProxyPassReverse and ProxyPassReverseCookiePath /shop /
        assert answers[41]["location"] == f"http://{shop}/home"
        assert cookie(answers[42]) == "JSESSIONID=8C2A.node1; path=/; httponly"
        # what the member was sent: its path and, ProxyPreserveHost being Off, its address
        assert sent(answers[43]) == ("/shop/cart?headers=1", answers[43]["backend"])
    # Difference (docs/apache.md): hbfork matches routes with path parameters cut, so ProxyPass
    # /manager ! keeps /manager;x out too; Apache (without mapping=servlet) proxies it.
    assert (apache[40]["status"], hbfork[40]["status"]) == (200, 404)
    # A redirect to the webapp's root (no trailing slash) is mapped back by both.
    assert apache[44]["location"] == hbfork[44]["location"] == f"http://{shop}/"


# --- 2. two vhosts with static exclusions


WWW = {member("b1", 8081), member("b2", 8081)}
BLOG = member("b3", 8081)
ACME = member("b3", 8080)


def test_vhosts_with_static_exclusions(backends: set[str], launcher: Launcher) -> None:
    start_fronts(launcher, "vhosts-static", {*WWW, BLOG, ACME})
    www, blog = "www.example.com", "blog.example.com"
    requests = [
        *get("/", www, 8), *get("/x", "example.com", 2),                   # 0-9
        *get("/x", "unknown.example.net", 4),                              # 10-13 default vhost
        *get("/static/app.css", www), *get("/images/a.png", "example.com"),  # 14, 15
        *get("/server-status", www), *get("/server-status", blog),         # 16, 17
        *get("/blog/post?headers=1", blog), *get("/blog/", "x.blog.example.com"),  # 18, 19
        *get("/x", blog), *get("/static/app.css", blog),                   # 20, 21
        *get("/admin/users?headers=1", blog),                              # 22
        *get(f"/admin/x?location=http://{BLOG}/wp-admin/login", blog),     # 23
        *get(f"/blog/x?location=http://{BLOG}/post", blog),                # 24
        *get("/blog/x?setcookie=sid%3D1%3B%20Domain%3D10.213.0.13%3B%20Path%3D%2F", blog),
        *get("/.well-known/acme-challenge/t1?headers=1", blog),            # 26
        *get("/.well-known/acme-challenge/t1?headers=1", www),             # 27
        *get("/x?headers=1", www),                                         # 28
    ]
    apache, hbfork = both(launcher, requests)
    for answers in (apache, hbfork):
        same_members(answers[:14], answers[:14], WWW)       # www, its alias, any other host
        assert statuses(answers[14:18]) == [404] * 4          # exclusions, vhost's and main's
        assert backends_of(answers[18:20]) == {BLOG: 2}
        # the blog vhost keeps what it does not proxy: 404, never www's "/"
        assert statuses(answers[20:22]) == [404, 404]
        assert answers[22]["backend"] == BLOG
        assert cookie(answers[25]) == f"sid=1; domain={blog}; path=/"
        assert answers[26]["backend"] == answers[27]["backend"] == ACME
    for index, expected in ((18, ("/post?headers=1", BLOG)),
                            (22, ("/wp-admin/users?headers=1", BLOG)),
                            (26, ("/acme/acme-challenge/t1?headers=1", ACME)),   # Off in blog
                            (27, ("/acme/acme-challenge/t1?headers=1", www)),    # On in www
                            (28, ("/x?headers=1", www))):
        assert sent(apache[index]) == sent(hbfork[index]) == expected, index
    # Differences (docs/apache.md): for ProxyPassReverse /blog/ balancer://blog/ Apache joins the
    # front path and the member's path with a double slash; hbfork does not ...
    assert apache[24]["location"] == f"http://{blog}/blog//post"
    assert hbfork[24]["location"] == f"http://{blog}/blog/post"
    # ... and Apache maps a response with the first ProxyPassReverse in force that matches
    # (the vhost's /blog/ one, before the <Location>'s), hbfork with the route's own.
    assert apache[23]["location"] == f"http://{blog}/blog//wp-admin/login"
    assert hbfork[23]["location"] == f"http://{blog}/admin/login"


# --- 3. an API with a hot standby, on a heartbeat front


API = {"a1": member("b1", 8082), "a2": member("b2", 8082), "standby": member("b3", 8082)}
REPORTS = member("b3", 8081)


def test_api_with_hot_standby(backends: set[str], launcher: Launcher) -> None:
    start_fronts(launcher, "api-standby", {*API.values(), REPORTS})
    api = "api.example.com"
    # lbmethod_heartbeat answers 503 until mod_heartmonitor has heard every member
    wait_for(lambda: len(backends_of(both(launcher, get("/api/v1/ping", api, 12))[0])) == 3,
             10, "Apache's front never balanced over all three api members")
    requests = [
        *get("/api/v1/users?headers=1", api, 24),                          # 0-23
        *get("/api/v2/items", api, 6, Cookie="ROUTEID=.a2"),                # 24-29
        *get("/api/v2/items", api, 2, Cookie="ROUTEID=.retired"),           # 30, 31
        *get("/api/v2/items", api, 1, Cookie="ROUTEID=.nosuch"),            # 32
        *get("/api/v2/items", api, 3, Cookie="ROUTEID=.standby"),           # 33-35
        *get("/exports/2024/all.csv?headers=1", api),                      # 36
        *get("/health", api),                                              # 37
        *get("/api/v3/items?headers=1", api),                              # 38
        *get(f"/api/v3/login?location=http://{API['a1']}/legacy/home", api),  # 39
    ]
    apache, hbfork = both(launcher, requests)
    routes = {address: route for route, address in API.items()}
    for answers in (apache, hbfork):
        same_members(answers[:24], answers[:24], set(API.values()))
        # no route yet: the front sets ROUTEID to the member that answered
        for answer in answers[:24]:
            assert cookie(answer) == f"ROUTEID=.{routes[answer['backend']]}; path=/", answer
            assert sent(answer) == ("/users?headers=1", api)        # ProxyPreserveHost On
        # a valid route: its member, and no new cookie
        assert backends_of(answers[24:30]) == {API["a2"]: 6}
        assert all(not a["cookies"] for a in answers[24:30])
        # nofailover: the route's member is disabled, so 503; a route no member has: balanced
        assert statuses(answers[30:32]) == [503, 503]
        assert answers[32]["status"] == 200 and len(answers[32]["cookies"]) == 1
        # a session on the hot standby stays there
        assert backends_of(answers[33:36]) == {API["standby"]: 3}
        assert answers[37]["status"] == 404
        assert answers[39]["location"] == f"http://{api}/api/home"
    assert sent(apache[36]) == sent(hbfork[36]) == ("/exports/2024/all.csv?headers=1", api)
    assert apache[36]["backend"] == hbfork[36]["backend"] == REPORTS
    assert sent(apache[38]) == sent(hbfork[38]) == ("/legacy/v3/items?headers=1", api)
    # Difference (docs/apache.md): lbmethod=heartbeat ignores status=+H, so Apache gives the hot
    # standby new requests too; hbfork keeps it out while the other members are up.
    assert API["standby"] not in backends_of(hbfork[:24])
    assert backends_of(apache[:24])[API["standby"]] > 0


if __name__ == "__main__" and sys.argv[1:2] == ["exchange"]:
    json.dump(exchange(json.loads(sys.argv[2])), sys.stdout)
