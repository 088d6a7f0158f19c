"""Change notifications against the Graph simulator: subscriptions created, renewed before they
expire and recreated when Graph drops them; the validation handshake; notifications verified
by clientState and turned into fetched messages; lifecycle events."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import SignatureError
from syncd.kit.http import RetryPolicy
from syncd.mapping import load_mapping, mappings_dir
from syncd.providers.teams.connector import TeamsConnector, TeamsCredentials, compose
from syncd.providers.teams.sim import TeamsDelivery, TeamsSimulator
from syncd.universal import WebhookRequest

HOOK = "https://syncd.example/webhooks/teams/int-1"
STATE = "client-state-0123456789"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock) -> TeamsSimulator:
    return TeamsSimulator(clock=clock, require_https=True)


@pytest.fixture
def ids(sim) -> dict[str, str]:
    return sim.seed()


def make(sim: TeamsSimulator, clock: Clock, *, settings: dict[str, Any] | None = None, public: bool = True,
         client_state: str = STATE) -> TeamsConnector:
    credentials = TeamsCredentials(access_token="sim-graph-token", client_state=client_state, tenant_id=sim.tenant_id,
                                   client_id=sim.client[0], client_secret=sim.client[1], refresh_token="sim-graph-refresh")
    http = TeamsConnector.make_http("https://graph.microsoft.com/v1.0", credentials, timeout_s=5,
                                    policy=RetryPolicy(max_retries=0), transport=httpx.ASGITransport(sim))
    ctx = ConnectorContext(http=http, mapping=load_mapping(mappings_dir() / "teams.yaml"), webhook_url=HOOK,
                           clock=clock, public_webhooks=public)
    return TeamsConnector(credentials, settings or {}, ctx)


def as_request(delivery: TeamsDelivery) -> WebhookRequest:
    """What the HTTP layer hands the connector: the form-decoded query and the raw body."""
    return WebhookRequest("POST", delivery.url, delivery.headers, dict(parse_qsl(delivery.query)), delivery.body)


@pytest.fixture
async def teams(sim, clock):
    connector = make(sim, clock)

    async def validate(delivery: TeamsDelivery) -> tuple[int, str, str]:
        answer = connector.accept_webhook(as_request(delivery)).answer
        return answer.status_code, answer.media_type, answer.body

    sim.validator = validate  # Graph checks the endpoint before it creates a subscription
    yield connector
    await connector.close()


async def notified(teams: TeamsConnector, sim: TeamsSimulator):
    """Every queued delivery, accepted and parsed as the inbox worker would."""
    changes = []
    for delivery in sim.take_deliveries():
        request = as_request(delivery)
        assert teams.accept_webhook(request).delivery_id
        changes.append(await teams.parse_webhook(request))
    return changes


# -- maintain -------------------------------------------------------------------------------------

async def test_maintain_subscribes_to_the_users_chats_and_each_channel_after_the_handshake(teams, sim, ids, clock):
    state = await teams.maintain(None)
    resources = {f"/users/{sim.me}/chats/getAllMessages", f"/{ids['general']}/messages"}
    assert set(state["subscriptions"]) == resources
    subs = {s["resource"]: s for s in sim.subscriptions.values()}
    assert set(subs) == resources
    for resource, sub in subs.items():
        assert state["subscriptions"][resource] == {"id": sub["id"], "expiresAt": sub["expirationDateTime"]}
        assert sub["changeType"] == "created,updated,deleted" and sub["_clientState"] == STATE
        assert sub["notificationUrl"] == sub["lifecycleNotificationUrl"] == HOOK
        assert sub["expirationDateTime"] == "2027-01-15T08:58:00.000Z"  # within Graph's 60 minutes


async def test_a_subscription_is_refused_when_the_endpoint_fails_the_handshake(teams, sim, ids):
    async def unreachable(delivery: TeamsDelivery) -> tuple[int, str, str]:
        return 404, "application/json", "{}"

    sim.validator = unreachable
    state = await teams.maintain(None)
    assert sim.subscriptions == {}
    assert all("ValidationError" in entry["error"] for entry in state["subscriptions"].values())
    sim.validator = None
    state = await teams.maintain(state)  # the next run tries again
    assert len(sim.subscriptions) == 2 and all("error" not in e for e in state["subscriptions"].values())


async def test_maintain_keeps_fresh_subscriptions_and_renews_those_expiring_within_20_minutes(teams, sim, ids, clock):
    first = await teams.maintain(None)
    clock.now += 15 * 60
    assert await teams.maintain(first) == first
    assert sim.faults.calls["subscriptions.update"] == 0
    clock.now += 25 * 60  # 18 minutes left
    renewed = await teams.maintain(first)
    assert sim.faults.calls["subscriptions.update"] == 2 and sim.faults.calls["subscriptions.create"] == 2
    for resource, entry in renewed["subscriptions"].items():
        assert entry["id"] == first["subscriptions"][resource]["id"]
        assert entry["expiresAt"] == "2027-01-15T09:38:00.000Z"


async def test_an_expired_or_removed_subscription_is_created_again(teams, sim, ids, clock):
    first = await teams.maintain(None)
    clock.now += 61 * 60  # nobody renewed it: Graph dropped both
    again = await teams.maintain(first)
    assert sim.faults.calls["subscriptions.create"] == 4
    assert {e["id"] for e in again["subscriptions"].values()} == set(sim.subscriptions)
    assert not {e["id"] for e in first["subscriptions"].values()} & set(sim.subscriptions)


async def test_a_lost_state_adopts_the_live_subscriptions_instead_of_duplicating_them(teams, sim, ids):
    await teams.maintain(None)
    await teams.maintain(None)
    assert len(sim.subscriptions) == 2 and sim.faults.calls["subscriptions.create"] == 2


async def test_subscriptions_no_longer_wanted_are_deleted(sim, ids, clock):
    teams = make(sim, clock)
    state = await teams.maintain(None)
    only_dm = make(sim, clock, settings={"importChats": [ids["dm"]]})
    narrowed = await only_dm.maintain(state)
    assert list(narrowed["subscriptions"]) == [f"/chats/{ids['dm']}/messages"]
    assert [s["resource"] for s in sim.subscriptions.values()] == [f"/chats/{ids['dm']}/messages"]
    await teams.close()
    await only_dm.close()


async def test_unsubscribe_deletes_every_subscription_of_the_integration(teams, sim, ids):
    state = await teams.maintain(None)
    await teams.maintain(None)  # state lost once: the live ones are adopted, not duplicated
    assert len(sim.subscriptions) == 2
    await teams.unsubscribe(state)
    assert sim.subscriptions == {} and sim.faults.calls["subscriptions.delete"] == 2


async def test_unsubscribe_with_a_lost_state_finds_the_subscriptions_by_their_url(teams, sim, ids):
    await teams.maintain(None)
    await teams.unsubscribe(None)
    assert sim.subscriptions == {}


async def test_unsubscribe_after_graph_expired_them_is_not_an_error(teams, sim, ids):
    state = await teams.maintain(None)
    sim.subscriptions.clear()
    await teams.unsubscribe(state)
    assert sim.subscriptions == {}


async def test_without_a_public_url_nothing_is_subscribed(sim, ids, clock):
    teams = make(sim, clock, public=False)
    state = await teams.maintain(None)
    assert state["subscriptions"] == {} and "polling only" in state["note"]
    assert sim.subscriptions == {}
    await teams.close()


async def test_graph_refuses_a_subscription_longer_than_an_hour_or_on_plain_http(sim, ids, clock):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(sim), base_url="https://graph.microsoft.com/v1.0",
                                 headers={"authorization": "Bearer sim-graph-token"}) as graph:
        body = {"changeType": "created", "notificationUrl": HOOK, "resource": f"/chats/{ids['dm']}/messages",
                "expirationDateTime": "2027-01-15T09:00:01.000Z", "clientState": STATE}
        too_long = await graph.post("/subscriptions", json=body)
        assert too_long.status_code == 400 and "60 minutes" in too_long.json()["error"]["message"]
        plain = await graph.post("/subscriptions", json={**body, "expirationDateTime": "2027-01-15T08:30:00Z",
                                                         "notificationUrl": "http://syncd.example/x"})
        assert plain.status_code == 400 and "https" in plain.json()["error"]["message"]


# -- notifications --------------------------------------------------------------------------------

async def test_a_new_message_is_fetched_and_mapped_from_its_notification(teams, sim, ids):
    await teams.maintain(None)
    sent = sim.post(ids["group"], ids["alex"], "<p>Status?</p>")
    [changes] = await notified(teams, sim)
    [message] = changes.messages
    assert message.external_message_id == compose(ids["group"], sent["id"])
    assert (message.text, message.html, message.sender.name) == ("Status?", "<p>Status?</p>", "Alex Wilber")
    assert [(c.external_chat_id, c.name) for c in changes.chats] == [(ids["group"], "Project Falcon")]


async def test_channel_replies_edits_and_soft_deletes_arrive_through_the_channel_subscription(teams, sim, ids):
    await teams.maintain(None)
    reply = sim.post(ids["general"], ids["lee"], "Noted", content_type="text", reply_to=ids["root"])
    sim.edit(ids["general"], reply["id"], "Noted, thanks")
    sim.soft_delete(ids["general"], ids["root"])
    created, updated, deleted = await notified(teams, sim)
    assert created.messages[0].external_thread_id == compose(ids["general"], ids["root"])
    assert updated.messages[0].text == "Noted, thanks" and updated.messages[0].edited_at is not None
    assert deleted.messages[0].external_message_id == compose(ids["general"], ids["root"])
    assert deleted.messages[0].deleted_at is not None
    assert [c.name for c in created.chats] == ["Contoso / General"] and updated.chats == []  # named once


async def test_a_batch_with_one_wrong_client_state_is_refused_whole(teams, sim, ids):
    await teams.maintain(None)
    sim.post(ids["dm"], ids["megan"], "one", content_type="text")
    sim.post(ids["dm"], ids["megan"], "two", content_type="text")
    first, second = sim.take_deliveries()
    items = first.payload["value"] + [{**second.payload["value"][0], "clientState": "not-" + STATE}]
    body = json.dumps({"value": items}).encode()
    with pytest.raises(SignatureError):
        teams.accept_webhook(WebhookRequest("POST", HOOK, {}, {}, body))
    good = json.dumps({"value": items[:1] * 2}).encode()
    assert teams.accept_webhook(WebhookRequest("POST", HOOK, {}, {}, good)).delivery_id


async def test_lifecycle_events_reauthorize_recreate_or_resync(teams, sim, ids, clock):
    state = await teams.maintain(None)
    chats_sub = state["subscriptions"][f"/users/{sim.me}/chats/getAllMessages"]["id"]
    clock.now += 30 * 60
    reauth = await teams.parse_webhook(as_request(sim.lifecycle(chats_sub, "reauthorizationRequired")))
    assert not reauth.poll_requested
    assert sim.subscriptions[chats_sub]["expirationDateTime"] == "2027-01-15T09:28:00.000Z"

    missed = await teams.parse_webhook(as_request(sim.lifecycle(chats_sub, "missed")))
    assert missed.resync_requested

    removed = await teams.parse_webhook(as_request(sim.lifecycle(chats_sub, "subscriptionRemoved")))
    assert removed.poll_requested and chats_sub not in sim.subscriptions
    again = await teams.maintain(state)
    new_id = again["subscriptions"][f"/users/{sim.me}/chats/getAllMessages"]["id"]
    assert new_id != chats_sub and new_id in sim.subscriptions


async def test_reauthorizing_a_subscription_graph_dropped_asks_for_a_poll(teams, sim, ids):
    state = await teams.maintain(None)
    sub = next(iter(state["subscriptions"].values()))["id"]
    delivery = sim.lifecycle(sub, "reauthorizationRequired")
    del sim.subscriptions[sub]
    assert (await teams.parse_webhook(as_request(delivery))).poll_requested


async def test_a_notification_for_a_hard_deleted_message_is_a_tombstone(teams, sim, ids):
    await teams.maintain(None)
    sent = sim.post(ids["dm"], ids["megan"], "oops", content_type="text")
    [delivery] = sim.take_deliveries()
    sim.hard_delete(ids["dm"], sent["id"])
    [gone] = (await teams.parse_webhook(as_request(delivery))).messages
    assert gone.external_message_id == compose(ids["dm"], sent["id"]) and gone.deleted_at is not None


async def test_system_events_in_a_notification_store_nothing(teams, sim, ids):
    await teams.maintain(None)
    sim.post(ids["group"], None, "<systemEventMessage/>", message_type="systemEventMessage")
    [changes] = await notified(teams, sim)
    assert changes.messages == [] and changes.chats == []


async def test_credentials_replaced_without_a_client_state_get_a_new_one_and_fresh_subscriptions(sim, ids, clock):
    state = await make(sim, clock).maintain(None)
    saved: list[dict[str, Any]] = []

    async def store(credentials: dict[str, Any]) -> None:
        saved.append(credentials)

    replaced = make(sim, clock, client_state=None)  # type: ignore[arg-type]
    replaced.ctx.on_credentials = store
    await replaced.maintain(state)
    [stored] = saved
    assert len(stored["clientState"]) >= 32 and stored["refreshToken"] == "sim-graph-refresh"
    # Graph cannot change a clientState: the old subscriptions are gone, the new ones carry it.
    assert {s["_clientState"] for s in sim.subscriptions.values()} == {stored["clientState"]}
    assert len(sim.subscriptions) == 2
    assert not set(sim.subscriptions) & {e["id"] for e in state["subscriptions"].values()}
    sim.post(ids["dm"], ids["megan"], "after the swap", content_type="text")
    [delivery] = sim.take_deliveries()
    assert replaced.accept_webhook(as_request(delivery)).delivery_id
    await replaced.close()
