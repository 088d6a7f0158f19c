"""The Slack simulator itself: Slack's answer shapes, filters, cursors, faults and deliveries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from syncd.providers.slack.sim import SlackSimulator
from syncd.sim.base import FaultPlan, Faults

AUTH = {"Authorization": "Bearer xoxb-sim-bot-token"}


@pytest.fixture
def sim() -> SlackSimulator:
    sim = SlackSimulator(clock=lambda: 1_700_000_000.0)
    sim.seed_workspace()
    return sim


@pytest.fixture
async def api(sim):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://slack.sim/api") as client:
        yield client


async def test_errors_are_http_200_with_ok_false(api):
    answer = await api.get("/conversations.history", params={"channel": "C0NOPE"}, headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() == {"ok": False, "error": "channel_not_found"}
    assert (await api.get("/auth.test")).json() == {"ok": False, "error": "not_authed"}
    assert (await api.post("/auth.test", data={"token": "xoxb-other"})).json()["error"] == "invalid_auth"


async def test_history_filters_by_oldest_and_latest_newest_first(api, sim):
    channel = sim.ids["general"]
    every = [m["ts"] for m in sim.truth(channel) if m["thread_ts"] in (None, m["ts"])]
    answer = (await api.get("/conversations.history", headers=AUTH,
                            params={"channel": channel, "oldest": every[0], "latest": every[-1]})).json()
    assert [m["ts"] for m in answer["messages"]] == every[1:-1][::-1]
    inclusive = (await api.get("/conversations.history", headers=AUTH,
                               params={"channel": channel, "oldest": every[0], "inclusive": "true"})).json()
    assert [m["ts"] for m in inclusive["messages"]] == every[::-1]


async def test_cursors_are_opaque_base64_and_a_forged_one_is_refused(api, sim):
    first = (await api.get("/conversations.history", headers=AUTH,
                           params={"channel": sim.ids["general"], "limit": 1})).json()
    assert first["has_more"] is True
    assert base64.b64decode(first["response_metadata"]["next_cursor"]).startswith(b"next_ts:")
    forged = (await api.get("/conversations.history", headers=AUTH,
                            params={"channel": sim.ids["general"], "cursor": "not-a-cursor"})).json()
    assert forged == {"ok": False, "error": "invalid_cursor"}


async def test_a_thread_parent_carries_its_reply_summary(api, sim):
    history = (await api.get("/conversations.history", headers=AUTH, params={"channel": sim.ids["general"]})).json()
    [parent] = [m for m in history["messages"] if m.get("reply_count")]
    assert parent["thread_ts"] == parent["ts"] and parent["reply_count"] == 2
    assert all(m.get("thread_ts") in (None, m["ts"]) for m in history["messages"])


async def test_post_message_accepts_json_and_form_bodies(api, sim):
    channel = sim.ids["general"]
    as_json = (await api.post("/chat.postMessage", json={"channel": channel, "text": "json"}, headers=AUTH)).json()
    as_form = (await api.post("/chat.postMessage", data={"channel": channel, "text": "form"}, headers=AUTH)).json()
    assert as_json["ok"] and as_form["ok"] and as_json["ts"] < as_form["ts"]
    assert as_json["message"]["bot_id"] == sim.bot_id
    no_text = (await api.post("/chat.postMessage", json={"channel": channel}, headers=AUTH)).json()
    assert no_text["error"] == "no_text"


async def test_every_nth_call_is_rate_limited_with_retry_after(sim, api):
    sim.faults.plan = FaultPlan(rate_limit_every=3, retry_after_s=4, endpoints=frozenset({"auth.test"}))
    statuses = [(await api.get("/auth.test", headers=AUTH)) for _ in range(6)]
    assert [r.status_code for r in statuses] == [200, 200, 429, 200, 200, 429]
    assert statuses[2].headers["Retry-After"] == "4"
    assert statuses[2].json() == {"ok": False, "error": "ratelimited"}
    assert (await api.get("/users.info", headers=AUTH, params={"user": sim.bot_user_id})).status_code == 200
    assert sim.faults.calls["auth.test"] == 6


async def test_scripted_faults_come_before_the_plan():
    faults = Faults(FaultPlan(server_error_every=1, server_error_status=502))
    faults.fail_next("x", "rate_limit", retry_after_s=9)
    first, second = await faults.check("x"), await faults.check("x")
    assert (first.kind, first.status, first.retry_after_s) == ("rate_limit", 429, 9)
    assert (second.kind, second.status) == ("server_error", 502)


async def test_deliveries_are_signed_the_way_slack_signs_them(sim):
    received: list[tuple[bytes, dict]] = []

    async def endpoint(request: Request) -> JSONResponse:
        received.append((await request.body(), dict(request.headers)))
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/hook", endpoint, methods=["POST"])])
    delivery = sim.post_user_message(sim.ids["general"], "signed", sim.ids["bob"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://syncd") as client:
        answer = await sim.deliver(client, "http://syncd/hook", delivery)
    assert answer.status_code == 200
    [(body, headers)] = received
    payload = json.loads(body)
    assert payload["type"] == "event_callback" and payload["event_id"] == delivery.event_id
    assert payload["event"]["text"] == "signed" and payload["event"]["channel"] == sim.ids["general"]
    base = f"v0:{headers['x-slack-request-timestamp']}:".encode() + body
    assert headers["x-slack-signature"] == "v0=" + hmac.new(b"sim-signing-secret", base, hashlib.sha256).hexdigest()


def test_truth_keeps_deleted_messages_as_flagged(sim):
    channel = sim.ids["secret"]
    [only] = sim.truth(channel)
    sim.delete_message(channel, only["ts"])
    assert sim.truth(channel) == [{**only, "deleted": True}]
