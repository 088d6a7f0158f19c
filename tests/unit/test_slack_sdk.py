"""The official ``slack_sdk`` WebClient against the Slack simulator over real HTTP.

If the SDK cannot page through the simulator with its own cursor handling, or rejects an
answer, the simulator is wrong.
"""

from __future__ import annotations

import pytest

slack_sdk = pytest.importorskip("slack_sdk")
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from syncd.providers.slack.sim import SlackSimulator
from syncd.sim.base import ServerThread

TOKEN = "xoxb-sim-bot-token"


@pytest.fixture(scope="module")
def served():
    sim = SlackSimulator(valid_tokens=[TOKEN])
    sim.seed_workspace()
    for i in range(5):
        sim.add_message(sim.ids["secret"], f"note {i}", sim.ids["bob"])
    with ServerThread(sim) as server:
        yield sim, WebClient(token=TOKEN, base_url=server.url + "/api/", timeout=10)


def collect(response) -> list[dict]:
    """Every page's data: iterating a SlackResponse refills the same object page by page."""
    return [dict(page.data) for page in response]


def test_the_sdk_pages_through_conversations_list(served):
    sim, client = served
    pages = collect(client.conversations_list(types="public_channel,private_channel,mpim,im", limit=1))
    assert len(pages) == 4
    ids = [c["id"] for page in pages for c in page["channels"]]
    assert ids == list(sim.channels)


def test_the_sdk_pages_through_conversations_history_newest_first(served):
    sim, client = served
    channel = sim.ids["secret"]
    pages = collect(client.conversations_history(channel=channel, limit=2))
    assert len(pages) == 3
    texts = [m["text"] for page in pages for m in page["messages"]]
    assert texts == ["note 4", "note 3", "note 2", "note 1", "note 0", "The cake is a lie"]
    assert pages[0]["has_more"] is True and pages[-1]["has_more"] is False


def test_the_sdk_pages_through_thread_replies(served):
    sim, client = served
    channel = sim.ids["general"]
    parent = next(m for m in sim.truth(channel) if m["text"] == "Release plan thread")
    pages = collect(client.conversations_replies(channel=channel, ts=parent["ts"], limit=1))
    assert [p["messages"][0]["ts"] for p in pages] == [parent["ts"]] * 2
    assert [p["messages"][1]["text"] for p in pages] == ["Ship Friday", "QA Thursday"]


def test_the_sdk_posts_a_message_the_simulator_keeps(served):
    sim, client = served
    channel = sim.ids["general"]
    answer = client.chat_postMessage(channel=channel, text="hello from slack_sdk")
    assert answer["ok"] is True and answer["channel"] == channel
    [kept] = [m for m in sim.truth(channel) if m["ts"] == answer["ts"]]
    assert kept["text"] == "hello from slack_sdk" and kept["bot_id"] == sim.bot_id


def test_the_sdk_sees_errors_and_rate_limits_as_slack_sends_them(served):
    sim, client = served
    with pytest.raises(SlackApiError) as failed:
        client.conversations_history(channel="C0NOPE")
    assert failed.value.response["error"] == "channel_not_found"

    sim.faults.fail_next("auth.test", "rate_limit", retry_after_s=12)
    with pytest.raises(SlackApiError) as limited:
        client.auth_test()
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "12"
    assert limited.value.response["error"] == "ratelimited"
    assert client.auth_test()["user_id"] == sim.bot_user_id
