"""The Instagram connector against the Instagram simulator (``httpx.ASGITransport``): what
differs from Messenger — usernames, ``platform=instagram``, the Send API body, the window's
subcode, ``read: {mid}`` receipts and unsends — on the same shared Page-messaging code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd import providers
from syncd.kit.connector import ConnectorContext
from syncd.kit.http import RetryPolicy
from syncd.mapping import load_mapping
from syncd.providers.instagram.sim import InstagramSimulator
from syncd.providers.messenger.sim import MessengerSimulator
from syncd.providers.meta.pages import OutsideWindow
from syncd.universal import ChatData, OutgoingMessage, WebhookRequest

InstagramConnector = providers.bound("instagram")

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "IGQ-sim-token"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock) -> InstagramSimulator:
    sim = InstagramSimulator(valid_tokens=[TOKEN], clock=clock)
    sim.add_person("6001", "ann.ames")
    start = int((clock() - 3600) * 1000)
    sim.add_message("6001", "Do you ship to Lisbon?", at_ms=start)
    sim.add_message("6001", "We do!", from_account=True, at_ms=start + 1000)
    return sim


def make(sim: InstagramSimulator, clock: Clock, settings: dict[str, Any] | None = None) -> InstagramConnector:
    creds = InstagramConnector.Credentials(accessToken=TOKEN, igUserId=sim.account_id, appSecret=sim.app_secret,
                                           verifyToken=sim.verify_token)
    http = InstagramConnector.make_http("http://meta.sim", creds, policy=RetryPolicy(max_retries=2),
                                        timeout_s=5, transport=httpx.ASGITransport(app=sim))
    ctx = ConnectorContext(http=http, mapping=load_mapping(ROOT / "mappings/instagram.yaml"),
                           webhook_url="https://syncd.test/webhooks/instagram/i1", clock=clock)
    return InstagramConnector(creds, settings or {}, ctx)


@pytest.fixture
def ig(sim, clock) -> InstagramConnector:
    return make(sim, clock)


async def webhook(connector: InstagramConnector, delivery):
    request = WebhookRequest("POST", "https://syncd.test/webhooks/instagram/i1",
                             {k.lower(): v for k, v in delivery.headers.items()}, {}, delivery.body)
    assert connector.accept_webhook(request).delivery_id
    return await connector.parse_webhook(request)


async def test_identify_uses_the_username(ig, sim):
    [me] = await ig.identify()
    assert (me.external_user_id, me.display_name, me.is_self) == (sim.account_id, "sim.bakery", True)


async def test_chats_are_instagram_conversations_named_by_username(ig, sim):
    [chat] = await ig.list_chats()
    assert (chat.external_chat_id, chat.name, chat.kind) == ("6001", "ann.ames", "dm")
    assert sim.requests[-1][1] == f"/{sim.account_id}/conversations"


async def test_history_keeps_both_directions(ig, sim):
    page = await ig.fetch_history_page(ChatData(external_chat_id="6001"), None)
    assert [(m.text, m.from_self, m.sender.name) for m in page.messages] == [
        ("We do!", True, "sim.bakery"), ("Do you ship to Lisbon?", False, "ann.ames")]


async def test_only_the_20_newest_messages_come_with_details(ig, sim):
    for n in range(25):
        sim.add_message("6001", f"n{n}")
    page = await ig.fetch_history_page(ChatData(external_chat_id="6001"), None)
    assert [m.text for m in page.messages] == [f"n{n}" for n in range(24, 4, -1)]
    assert page.next_cursor is None


async def test_send_posts_recipient_and_text_only(ig, sim):
    result = await ig.send(OutgoingMessage(chat=ChatData(external_chat_id="6001"), text="Yes, 3 days"))
    assert sim.requests[-1] == ("POST", f"/{sim.account_id}/messages",
                                {"recipient": {"id": "6001"}, "message": {"text": "Yes, 3 days"}})
    assert result.external_message_id == sim.truth("6001")[-1]["mid"]


async def test_the_closed_window_is_recognised_by_instagrams_subcode(ig, sim, clock):
    clock.now += 25 * 3600
    with pytest.raises(OutsideWindow, match="2534022"):
        await ig.send(OutgoingMessage(chat=ChatData(external_chat_id="6001"), text="late"))
    tagged = make(sim, clock, {"humanAgentTag": True})
    await tagged.send(OutgoingMessage(chat=ChatData(external_chat_id="6001"), text="late, by a person"))
    assert sim.requests[-1][2]["tag"] == "HUMAN_AGENT" and sim.truth("6001")[-1]["tag"] == "HUMAN_AGENT"


async def test_a_seen_receipt_marks_the_named_message_read_without_a_lookup(ig, sim):
    mine = sim.truth("6001")[1]["mid"]
    calls = sum(sim.faults.calls.values())
    [m] = (await webhook(ig, sim.read("6001", mid=mine))).messages
    assert (m.external_message_id, m.delivery_state) == (mine, "read")
    assert sum(sim.faults.calls.values()) - calls == 1  # the chat-name lookup only


async def test_an_unsend_from_the_simulator_is_a_tombstone(ig, sim):
    theirs = sim.truth("6001")[0]["mid"]
    [m] = (await webhook(ig, sim.unsend(theirs))).messages
    assert m.external_message_id == theirs and m.deleted_at is not None
    assert sim.truth("6001")[0]["deleted"] is True


async def test_a_messenger_delivery_is_not_an_instagram_one(ig):
    page = MessengerSimulator(page_id=ig.account_id, app_secret=ig.credentials.app_secret)
    delivery = page.user_message("1", "hi")
    request = WebhookRequest("POST", "x", {k.lower(): v for k, v in delivery.headers.items()}, {}, delivery.body)
    assert ig.accept_webhook(request).delivery_id is None
    assert (await ig.parse_webhook(request)).messages == []


def test_oauth_asks_for_instagram_scopes():
    spec = InstagramConnector.oauth
    assert spec.scopes == ("instagram_basic", "instagram_manage_messages") and spec.base_url_key == "meta_www"
    assert InstagramConnector.credentials_from_oauth({"access_token": "EAAG1", "token_type": "bearer"},
                                                     client_id="1", client_secret="s") == {
        "accessToken": "EAAG1", "appSecret": "s"}


async def test_finishing_a_connect_finds_the_account_linked_to_the_users_page(sim, clock):
    from syncd.kit.http import ProviderHttp

    sim.valid_tokens.add("EAAG-user")
    http = ProviderHttp("http://meta.sim/v21.0", transport=httpx.ASGITransport(app=sim))
    finished = await InstagramConnector.finish_oauth({"accessToken": "EAAG-user", "appSecret": sim.app_secret}, http)
    await http.aclose()
    assert (finished["igUserId"], finished["accessToken"]) == (sim.account_id, sim.page_token())
    creds = {**finished, "verifyToken": "vt"}
    connector = make(sim, clock)
    connector.credentials = InstagramConnector.Credentials.model_validate(creds)
    connector.use_token(creds["accessToken"])
    assert [c.external_chat_id for c in await connector.list_chats()] == ["6001"]
