"""FastPlans (hbfork.proxy.http.fast_plan): what the fast path knows of a routing decision on a
listener, worked out once per (listener, Decision) and shared."""

from __future__ import annotations

from hbfork.proxy.http.router import Decision
from tests.unit.proxy.fakes import FakeContext, member

RULES = """
request_headers = ["set X-A 1"]
[request_id]
enabled = true
response = false
"""
ROUTES = """
[[pool]]
name = "app"
members = ["{member}"]
[[route]]
path = "/app/"
pool = "app"
rewrite = "/"
[[route]]
path = "/closed"
pass = false
"""


def test_a_plan_is_made_once_per_listener_and_decision() -> None:
    ctx = FakeContext([member(1)])
    router = ctx.router
    decision = router.decide_for(b"front", b"/x")
    plans = router.fast_plans
    plan = plans.plan("a", decision)
    assert plan is not None and plans.plan("a", decision) is plan
    assert plans.plan("b", decision) is not plan  # another listener may have other rules
    # A Decision made anew (the router's cache emptied) never meets an old one's plan.
    other = Decision(decision.pool, b"")
    assert plans.plan("a", other) is not plan


def test_without_rules_or_ids_a_plan_has_no_program() -> None:
    ctx = FakeContext([member(1)], "\n[request_id]\nenabled = false\n")
    plan = ctx.router.fast_plans.plan("a", ctx.router.decide_for(b"front", b"/x"))
    assert plan is not None and plan.program is None and plan.ids is None
    assert not plan.rewrites_request and not plan.rewrites_response and plan.plain


def test_rules_and_ids_are_in_the_plan() -> None:
    ctx = FakeContext([member(1)], RULES)
    plan = ctx.router.fast_plans.plan("a", ctx.router.decide_for(b"front", b"/x"))
    assert plan is not None and plan.program is not None and plan.ids is not None
    assert plan.rewrites_request and not plan.echo and not plan.rewrites_response


def test_decisions_the_fast_path_does_not_take_have_no_plan() -> None:
    m = member(1)
    ctx = FakeContext([m], ROUTES.replace("{member}", m.target.address))
    plans, router = ctx.router.fast_plans, ctx.router
    assert plans.plan("a", router.decide_for(b"front", b"/closed")) is None  # no pool
    routed = plans.plan("a", router.decide_for(b"front", b"/app/x"))
    assert routed is not None and routed.member_target == b"/x" and not routed.plain
