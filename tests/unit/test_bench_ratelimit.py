"""The rate-limited platform of the import benchmarks: one budget, or one per method."""

from __future__ import annotations

from bench.ratelimit import RateLimited


def test_a_shared_budget_refuses_any_method_once_it_is_used_up() -> None:
    limited = RateLimited(app=None, rate=2)
    assert limited._admit(1, "conversations.list") is None
    assert limited._admit(1, "conversations.history") is None
    wait = limited._admit(1, "conversations.history")
    assert wait is not None and 0 < wait <= 1.0
    assert limited.refused == 1
    assert limited.window_use() == [2]


def test_a_budget_per_method_leaves_each_method_its_own() -> None:
    limited = RateLimited(app=None, rate=2, per_method=True)
    assert limited._admit(1, "conversations.list") is None
    assert limited._admit(1, "users.list") is None
    assert limited._admit(1, "conversations.history") is None
    assert limited._admit(1, "conversations.history") is None
    assert limited._admit(1, "conversations.history") is not None
    assert limited._admit(1, "auth.test") is None
    assert limited.refused == 1


def test_costs_count_against_the_budget() -> None:
    limited = RateLimited(app=None, rate=250, cost=lambda method, path: 10)
    for _ in range(25):
        assert limited._admit(limited.cost("GET", "/gmail/v1/users/me/threads/x")) is None
    assert limited._admit(10) is not None
    assert limited.window_use() == [250]
