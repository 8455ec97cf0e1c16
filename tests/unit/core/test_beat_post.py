"""hbfork.core.beat_post: what a heartbeat POST is answered, as mod_heartmonitor answers it."""

from __future__ import annotations

import pytest

from hbfork.core.beat_post import ACCEPTED, MAX_BODY, check_body, check_head, http_path, matches


@pytest.mark.parametrize(("value", "expected"), [
    ("", None), ("/HeartbeatListener", "/HeartbeatListener"), ("/hb/", "/hb/"), ("/", "/")])
def test_http_path_values(value, expected):
    assert http_path(value) == expected


@pytest.mark.parametrize("bad", ["HeartbeatListener", "/hb?x=1", "/h b", "/hb#x", "/é",
                                 "/hb%20", 5, "/a\x00"])
def test_bad_http_paths_are_refused(bad):
    with pytest.raises(ValueError):
        http_path(bad)


@pytest.mark.parametrize(("target", "path", "expected"), [
    (b"/HeartbeatListener", b"/HeartbeatListener", True),
    (b"/HeartbeatListener?x=1", b"/HeartbeatListener", True),
    (b"/HeartbeatListener/more", b"/HeartbeatListener", True),
    (b"/HeartbeatListenerX", b"/HeartbeatListener", False),
    (b"/Heartbeat", b"/HeartbeatListener", False),
    (b"/other", b"/HeartbeatListener", False),
    (b"/hb/x", b"/hb/", True),
    (b"/hb", b"/hb/", False),
    (b"/anything", b"/", True),
])
def test_location_prefix_matching(target, path, expected):
    assert matches(target, path) is expected


@pytest.mark.parametrize(("method", "length", "chunked", "status"), [
    (b"GET", 0, False, 405), (b"HEAD", 0, False, 405), (b"PUT", 30, False, 405),
    (b"POST", 0, True, 411), (b"POST", MAX_BODY + 1, False, 413),
])
def test_heads_answered_at_once(method, length, chunked, status):
    answer = check_head(method, length, chunked)
    assert answer is not None and answer.status == status
    if status == 405:
        assert ("Allow", "POST") in answer.extra and answer.sound


@pytest.mark.parametrize("length", [0, 30, MAX_BODY])
def test_a_post_within_the_limit_reads_its_body(length):
    assert check_head(b"POST", length, False) is None


@pytest.mark.parametrize(("body", "allowed", "status"), [
    (b"v=1&ready=20&busy=0&port=8080", True, 200),
    (b"v=1&ready=20&busy=0", True, 200),
    (b"v=1&ready=20&busy=0&port=8080", False, 403),
    (b"v=1&ready=20", True, 400),           # Apache 2.4.69+: no busy -> 400
    (b"", True, 400),
    (b"v=1&ready=x&busy=0", True, 400),
    (b"v=1&ready=1&busy=0&port=0", True, 400),
])
def test_bodies(body, allowed, status):
    answer = check_body(body, allowed)
    assert answer.status == status
    assert (answer is ACCEPTED) is (status == 200)
    assert answer.sound is (status != 400)
