"""Microsoft Teams through the HTTP API: an integration made from a delegated OAuth grant, its
import, the Graph validation handshake, change notifications verified by clientState,
subscriptions kept alive by maintenance, app events sent to Graph, echoes merged, and tokens
refreshed with Microsoft's rotating refresh tokens."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from apisupport import SimClock, assert_error, chat_messages, inbox_counts, load_fixture

from syncd.providers.teams.connector import compose
from syncd.providers.teams.sim import TeamsDelivery, TeamsSimulator
from syncd.testbed import BASE, Testbed

HANDSHAKE = load_fixture("teams")["signature_vectors"][0]


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


@pytest.fixture
def sim(clock) -> TeamsSimulator:
    return TeamsSimulator(clock=clock)


@pytest.fixture
async def tb(request, sim, clock, double_store):
    # ``@ON_THE_DOUBLE`` runs a test on the benchmarks' store double too: it yields to the
    # event loop on every MongoDB call, as motor does and mongomock never does.
    store = await double_store() if getattr(request, "param", "mongomock") == "double" else None
    tb = await Testbed.start(sims={"teams": sim}, store=store)
    # The connectors read the simulator's clock, so tests can move time past expiries.
    tb.daemon.engine.ctx.connectors.clock = clock

    async def validate(delivery: TeamsDelivery) -> tuple[int, str, str]:
        # Graph's reachability check reaches syncd through its public API, as it would.
        response = await tb.api.post(delivery.target(BASE), content=delivery.body, headers=delivery.headers)
        return response.status_code, response.headers.get("content-type", ""), response.text

    sim.validator = validate
    yield tb
    await tb.stop()


ON_THE_DOUBLE = pytest.mark.parametrize("tb", ["mongomock", "double"], indirect=True)


@pytest.fixture
def ids(sim) -> dict[str, str]:
    return sim.seed()


def grant(sim: TeamsSimulator, **extra: Any) -> dict[str, Any]:
    return {"tenantId": sim.tenant_id, "clientId": sim.client[0], "clientSecret": sim.client[1],
            "refreshToken": "sim-graph-refresh", **extra}


async def maintained(tb: Testbed, integration: dict[str, Any], timeout_s: float = 10) -> dict[str, Any]:
    """The integration's maintenance state, once the run started at creation has finished."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        statuses = (await tb.api.get(f"/integrations/{integration['id']}/status")).json()["status"]
        top = next((s for s in statuses if s.get("chatId") is None), {})
        if top.get("maintainedAt"):
            return top["maintenance"]
        if loop.time() > deadline:
            raise TimeoutError("maintenance did not run")
        await asyncio.sleep(0.02)


@pytest.fixture
async def teams(tb, sim, ids) -> dict[str, Any]:
    integration = await tb.create("teams", grant(sim))
    await maintained(tb, integration)
    return integration


async def deliver(tb: Testbed, integration: dict[str, Any], delivery: TeamsDelivery):
    return await tb.api.post(tb.webhook_url(integration), content=delivery.body, headers=delivery.headers)


def event(event_id: str, type_: str, chat: str, **message: Any) -> dict[str, Any]:
    return {"id": event_id, "type": type_, "customerId": "cust-1", "platform": "teams", "externalChatId": chat,
            "message": message}


# -- integration and import -----------------------------------------------------------------------

async def test_an_integration_from_a_refresh_grant_imports_named_chats_and_channel_threads(tb, sim, ids, teams):
    assert "credentials" not in teams and "clientState" not in json.dumps(teams)
    stored = await tb.daemon.store.get_credentials(teams["id"])
    assert len(stored["clientState"]) >= 32  # generated, kept with the (encrypted) credentials
    chats = await tb.chats(teams)
    assert {c["name"]: c["kind"] for c in chats.values()} == {
        "Megan Bowen": "dm", "Project Falcon": "group", "Alex Wilber, Megan Bowen": "group",
        "Contoso / General": "channel"}
    dm = {m["text"]: m for m in await chat_messages(tb, teams, ids["dm"])}
    assert dm["Hello world"]["direction"] == "inbound" and dm["Hello world"]["sender"]["name"] == "Megan Bowen"
    assert dm["Hi Megan & welcome"]["direction"] == "outbound"
    assert dm["Hi Megan & welcome"]["html"] == "<p>Hi <b>Megan</b> &amp; welcome</p>"
    assert [m["text"] for m in await chat_messages(tb, teams, ids["group"])] == ["Kick-off at 10"]  # no system event
    channel = await chat_messages(tb, teams, ids["general"])
    assert {m["externalThreadId"] for m in channel} == {compose(ids["general"], ids["root"])}
    assert sorted(m["text"] for m in channel) == ["QA Thursday", "Release plan", "Ship Friday"]


async def test_credentials_without_a_token_or_a_complete_grant_are_refused(tb, sim):
    response = await tb.api.post("/integrations", json={
        "platform": "teams", "customerId": "cust-1", "credentials": {"clientId": sim.client[0]}})
    error = assert_error(response, 422, "invalid_credentials")
    assert "refreshToken" in json.dumps(error)


async def test_a_grant_microsoft_refuses_is_refused(tb, sim):
    response = await tb.api.post("/integrations", json={
        "platform": "teams", "customerId": "cust-1", "credentials": grant(sim, refreshToken="0.revoked")})
    error = assert_error(response, 422, "credentials_rejected")
    assert "0.revoked" not in json.dumps(error) and sim.client[1] not in json.dumps(error)


# -- handshake and subscriptions ------------------------------------------------------------------

async def test_the_validation_handshake_is_answered_as_text_plain_with_the_decoded_token(tb, anon, teams):
    query = urlsplit(HANDSHAKE["url"]).query  # Graph's own encoding: %3a and +
    response = await anon.post(f"{tb.webhook_url(teams)}?{query}", content=b"",
                               headers={"content-type": "text/plain; charset=utf-8"})
    assert response.status_code == HANDSHAKE["expected_status"]
    assert response.headers["content-type"].startswith(HANDSHAKE["expected_content_type"])
    assert response.text == HANDSHAKE["expected"]
    assert await inbox_counts(tb, teams) == {"pending": 0, "done": 0, "failed": 0}


@ON_THE_DOUBLE
async def test_subscriptions_are_created_on_start_and_renewed_before_they_expire(tb, sim, ids, teams, clock):
    await tb.engine.maintain(teams["id"])  # what the scheduler runs every 15 minutes
    first = await maintained(tb, teams)
    assert set(first["subscriptions"]) == {f"/users/{sim.me}/chats/getAllMessages", f"/{ids['general']}/messages"}
    assert {e["id"] for e in first["subscriptions"].values()} == set(sim.subscriptions)
    assert sim.faults.calls["subscriptions.create"] == 2 and sim.faults.calls["subscriptions.update"] == 0

    clock.advance(45 * 60)  # 13 minutes left, and the access token nearly an hour old
    await tb.engine.maintain(teams["id"])
    renewed = await maintained(tb, teams)
    assert sim.faults.calls["subscriptions.update"] == 2
    for resource, entry in renewed["subscriptions"].items():
        assert entry["id"] == first["subscriptions"][resource]["id"]
        assert entry["expiresAt"] > first["subscriptions"][resource]["expiresAt"]
    tokens = sim.faults.calls["token"]
    clock.advance(12 * 60)  # the token is refreshed before it expires, not after a 401
    await tb.engine.maintain(teams["id"])
    assert sim.faults.calls["token"] == tokens + 1
    stored = await tb.daemon.store.get_credentials(teams["id"])
    assert stored["accessToken"] in sim.tokens and stored["expiresAt"] > clock() + 3000


async def test_a_removed_subscription_brings_a_poll_and_is_recreated(tb, sim, ids, teams):
    state = await maintained(tb, teams)
    chats_sub = state["subscriptions"][f"/users/{sim.me}/chats/getAllMessages"]["id"]
    sim.post(ids["dm"], ids["megan"], "while unsubscribed", content_type="text")
    assert (await deliver(tb, teams, sim.lifecycle(chats_sub, "subscriptionRemoved"))).status_code == 202
    await tb.settle()
    assert "while unsubscribed" in [m["text"] for m in await chat_messages(tb, teams, ids["dm"])]
    await tb.engine.maintain(teams["id"])
    resources = {s["resource"] for s in sim.subscriptions.values()}
    assert f"/users/{sim.me}/chats/getAllMessages" in resources and chats_sub not in sim.subscriptions


# -- notifications --------------------------------------------------------------------------------

async def test_a_notification_is_fetched_and_stored(tb, sim, ids, teams):
    sim.take_deliveries()
    sent = sim.post(ids["group"], ids["lee"], "<p>Deploy <b>done</b></p>")
    [delivery] = sim.take_deliveries()
    response = await deliver(tb, teams, delivery)
    assert response.status_code == 202
    await tb.settle()
    stored = {m["externalMessageId"]: m for m in await chat_messages(tb, teams, ids["group"])}
    message = stored[compose(ids["group"], sent["id"])]
    assert (message["text"], message["html"]) == ("Deploy done", "<p>Deploy <b>done</b></p>")
    assert (message["sender"]["name"], message["direction"], message["origin"]) == ("Lee Gu", "inbound", "platform")


@pytest.mark.parametrize("client_state", ["not-the-client-state-at-all", None])
async def test_a_notification_with_a_wrong_client_state_answers_401_and_stores_nothing(tb, sim, ids, teams, client_state):
    sim.take_deliveries()
    sent = sim.post(ids["dm"], ids["megan"], "forged?", content_type="text", notify=False)
    delivery = sim.notification(ids["dm"], sent["id"], client_state=client_state or "")
    if client_state is None:
        payload = json.loads(delivery.body)
        del payload["value"][0]["clientState"]
        delivery = TeamsDelivery(delivery.url, json.dumps(payload).encode(), delivery.headers)
    assert_error(await deliver(tb, teams, delivery), 401, "bad_signature")
    await tb.settle()
    assert await inbox_counts(tb, teams) == {"pending": 0, "done": 0, "failed": 0}
    assert "forged?" not in [m["text"] for m in await chat_messages(tb, teams, ids["dm"])]


async def test_a_client_state_the_operator_chose_is_kept_secret_and_still_verifies(tb, sim, ids):
    chosen = "operator-chosen-client-state-0123456789"
    created = await tb.create("teams", grant(sim), settings={"clientState": chosen, "importChats": [ids["dm"]]})
    await maintained(tb, created)
    listed = (await tb.api.get("/integrations")).text + (await tb.api.get(f"/integrations/{created['id']}")).text
    assert chosen not in json.dumps(created) and chosen not in listed
    assert (await tb.daemon.store.get_credentials(created["id"]))["clientState"] == chosen
    sim.take_deliveries()
    sim.post(ids["dm"], ids["megan"], "verified by the chosen state", content_type="text")
    [delivery] = sim.take_deliveries()
    assert chosen.encode() in delivery.body
    assert (await deliver(tb, created, delivery)).status_code == 202


async def test_an_echoed_handshake_token_is_never_sniffed_as_html(tb, anon, teams):
    response = await anon.post(f"{tb.webhook_url(teams)}?validationToken=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                               content=b"", headers={"content-type": "text/plain; charset=utf-8"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_same_notification_delivered_twice_is_stored_once(tb, sim, ids, teams):
    sim.take_deliveries()
    sim.post(ids["dm"], ids["megan"], "only once", content_type="text")
    [delivery] = sim.take_deliveries()
    for _ in range(2):
        assert (await deliver(tb, teams, delivery)).status_code == 202
    await tb.settle()
    assert (await inbox_counts(tb, teams))["done"] == 1
    assert [m["text"] for m in await chat_messages(tb, teams, ids["dm"])].count("only once") == 1


async def test_an_edit_and_a_soft_delete_update_the_stored_message(tb, sim, ids, teams, clock):
    sim.take_deliveries()
    theirs = sim.truth(ids["dm"])[0]
    clock.advance(5)
    sim.edit(ids["dm"], theirs["id"], "Hello world (edited)")
    for delivery in sim.take_deliveries():
        await deliver(tb, teams, delivery)
    await tb.settle()
    stored = {m["externalMessageId"]: m for m in await chat_messages(tb, teams, ids["dm"])}
    assert stored[compose(ids["dm"], theirs["id"])]["text"] == "Hello world (edited)"
    assert stored[compose(ids["dm"], theirs["id"])]["editedAt"] is not None
    sim.soft_delete(ids["dm"], theirs["id"])
    for delivery in sim.take_deliveries():
        await deliver(tb, teams, delivery)
    await tb.settle()
    stored = {m["externalMessageId"]: m for m in await chat_messages(tb, teams, ids["dm"])}
    assert stored[compose(ids["dm"], theirs["id"])]["deletedAt"] is not None


async def test_a_missed_notice_triggers_a_full_resync(tb, sim, ids, teams):
    state = await maintained(tb, teams)
    sub = state["subscriptions"][f"/users/{sim.me}/chats/getAllMessages"]["id"]
    sim.post(ids["dm"], ids["megan"], "sent while notifications were lost", content_type="text", notify=False)
    gone = sim.truth(ids["dm"])[0]["id"]
    sim.hard_delete(ids["dm"], gone)
    assert (await deliver(tb, teams, sim.lifecycle(sub, "missed"))).status_code == 202
    await tb.settle()
    await tb.wait_imported(teams["id"])
    stored = {m["externalMessageId"]: m for m in await chat_messages(tb, teams, ids["dm"])}
    assert "sent while notifications were lost" in [m["text"] for m in stored.values()]
    assert stored[compose(ids["dm"], gone)]["deletedAt"] is not None


# -- app events -----------------------------------------------------------------------------------

async def test_an_app_message_and_its_echo_are_one_stored_message(tb, sim, ids, teams):
    sim.take_deliveries()
    response = await tb.post_event(event("evt-1", "message.created", ids["dm"], id="app-1", text="From the app"))
    assert response.status_code == 202
    await tb.settle()
    sent = sim.truth(ids["dm"])[-1]
    assert (sent["body"]["content"], sent["from"]["user"]["id"]) == ("From the app", sim.me)
    [echo] = sim.take_deliveries()
    await deliver(tb, teams, echo)
    await tb.settle()
    mine = [m for m in await chat_messages(tb, teams, ids["dm"]) if m["text"] == "From the app"]
    assert len(mine) == 1
    assert mine[0]["externalMessageId"] == compose(ids["dm"], sent["id"])
    assert (mine[0]["origin"], mine[0]["appMessageId"], mine[0]["direction"]) == ("app", "app-1", "outbound")


async def test_app_replies_edits_and_deletes_reach_the_channel_thread(tb, sim, ids, teams, clock):
    thread = compose(ids["general"], ids["root"])
    created = event("evt-1", "message.created", ids["general"], id="app-2", text="On it", externalThreadId=thread)
    await tb.post_event(created)
    await tb.settle()
    reply = [m for m in sim.truth(ids["general"]) if m["replyToId"] == ids["root"]][-1]
    assert reply["body"]["content"] == "On it"
    clock.advance(5)
    await tb.post_event(event("evt-2", "message.updated", ids["general"], id="app-2", text="On it, ETA 5pm"))
    await tb.settle()
    reply = next(m for m in sim.truth(ids["general"]) if m["id"] == reply["id"])
    assert reply["body"]["content"] == "On it, ETA 5pm" and reply["lastEditedDateTime"]
    await tb.post_event(event("evt-3", "message.deleted", ids["general"], id="app-2"))
    await tb.settle()
    reply = next(m for m in sim.truth(ids["general"]) if m["id"] == reply["id"])
    assert reply["deletedDateTime"] is not None
    [stored] = [m for m in await chat_messages(tb, teams, ids["general"]) if m["appMessageId"] == "app-2"]
    assert stored["externalThreadId"] == thread and stored["deletedAt"] is not None


# -- tokens ---------------------------------------------------------------------------------------

@ON_THE_DOUBLE
async def test_a_rejected_access_token_is_refreshed_once_and_the_rotated_grant_stored(tb, sim, ids, teams):
    before = await tb.daemon.store.get_credentials(teams["id"])
    sim.take_deliveries()
    sim.expire_token(before["accessToken"])
    sim.revoke_used_refresh_tokens = True
    sim.post(ids["dm"], ids["megan"], "after the token expired", content_type="text")
    calls = sim.faults.calls["token"]
    for delivery in sim.take_deliveries():
        await deliver(tb, teams, delivery)
    await tb.settle()
    assert "after the token expired" in [m["text"] for m in await chat_messages(tb, teams, ids["dm"])]
    assert sim.faults.calls["token"] == calls + 1
    after = await tb.daemon.store.get_credentials(teams["id"])
    assert after["accessToken"] != before["accessToken"] and after["accessToken"] in sim.tokens
    assert after["refreshToken"] != before["refreshToken"] and after["refreshToken"] in sim.refresh_tokens
    assert after["clientState"] == before["clientState"]


@ON_THE_DOUBLE
async def test_a_refused_refresh_puts_the_integration_in_error(tb, sim, ids, teams):
    credentials = await tb.daemon.store.get_credentials(teams["id"])
    sim.expire_token(credentials["accessToken"])
    sim.refresh_tokens.clear()  # the user revoked syncd's consent
    sim.post(ids["dm"], ids["megan"], "not readable any more", content_type="text", notify=False)
    await tb.engine.poll(teams["id"])
    shown = (await tb.api.get(f"/integrations/{teams['id']}")).json()["integration"]
    assert shown["status"] == "error"
    assert "invalid_grant" in shown["statusReason"] and sim.client[1] not in shown["statusReason"]
    assert "not readable any more" not in [m["text"] for m in await chat_messages(tb, teams, ids["dm"])]


@pytest.mark.parametrize("tb", ["double"], indirect=True)
async def test_workers_that_start_together_after_a_restart_share_one_connector_and_spend_the_grant_once(
        tb, sim, ids, teams):
    # What a restarted process meets on a real server: no connector yet, a stored token that
    # no longer works, a provider that revokes a refresh token once it is used, and the
    # maintenance run, a poll and the import asking for the connector at the same moment.
    await tb.engine.ctx.connectors.forget(teams["id"])
    before = await tb.daemon.store.get_credentials(teams["id"])
    sim.expire_token(before["accessToken"])
    sim.revoke_used_refresh_tokens = True
    calls = sim.faults.calls["token"]
    await tb.api.post(f"/integrations/{teams['id']}/resync", json={"full": True})
    await asyncio.gather(tb.engine.maintain(teams["id"]), tb.engine.poll(teams["id"]))
    await tb.settle()
    shown = (await tb.api.get(f"/integrations/{teams['id']}")).json()["integration"]
    assert shown["status"] == "active", shown.get("statusReason")
    assert sim.faults.calls["token"] == calls + 1
    after = await tb.daemon.store.get_credentials(teams["id"])
    assert after["refreshToken"] in sim.refresh_tokens and after["accessToken"] in sim.tokens


@ON_THE_DOUBLE
async def test_a_grant_rotated_while_its_credentials_are_checked_is_the_one_stored(tb, sim, ids):
    # Creating an integration checks the grant (one refresh); with a provider that revokes a
    # refresh token once used, storing the grant as posted would break the integration at once.
    sim.revoke_used_refresh_tokens = True
    integration = await tb.create("teams", grant(sim))
    await maintained(tb, integration)
    await tb.settle()
    shown = (await tb.api.get(f"/integrations/{integration['id']}")).json()["integration"]
    assert shown["status"] == "active", shown.get("statusReason")
    stored = await tb.daemon.store.get_credentials(integration["id"])
    assert stored["refreshToken"] != "sim-graph-refresh" and stored["refreshToken"] in sim.refresh_tokens
    assert len(await tb.chats(integration)) > 0

    # Replacing the credentials checks them the same way, and keeps what the check rotated.
    sim.refresh_tokens["sim-graph-refresh-2"] = sim.me
    answer = await tb.api.put(f"/integrations/{integration['id']}/credentials",
                              json={"credentials": grant(sim, refreshToken="sim-graph-refresh-2")})
    assert answer.status_code == 200, answer.text
    await tb.settle()
    stored = await tb.daemon.store.get_credentials(integration["id"])
    assert stored["refreshToken"] not in ("sim-graph-refresh", "sim-graph-refresh-2")
    assert stored["refreshToken"] in sim.refresh_tokens
    shown = (await tb.api.get(f"/integrations/{integration['id']}")).json()["integration"]
    assert shown["status"] == "active", shown.get("statusReason")


async def test_an_account_connects_through_microsofts_consent_page(sim, ids, monkeypatch):
    for name in ("SYNCD_OAUTH_CLIENTS", "SYNCD_TEAMS_CLIENT_ID", "SYNCD_TEAMS_CLIENT_SECRET",
                 "SYNCD_MICROSOFT_LOGIN_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    tb = await Testbed.start(sims={"teams": sim},
                             oauth_clients={"teams": {"clientId": sim.client[0], "clientSecret": sim.client[1]}})
    try:
        start = await tb.api.get("/connect/teams", params={"customerId": "cust-9"}, follow_redirects=False)
        location = start.headers["location"]
        assert location.startswith("https://login.microsoftonline.com/common/oauth2/v2.0/authorize?")
        assert "offline_access" in parse_qs(urlsplit(location).query)["scope"][0].split()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(sim)) as browser:
            back = (await browser.get(location)).headers["location"]
        done = await tb.api.get(back.replace(BASE, ""))
        assert done.status_code == 201, done.text
        integration = done.json()["integration"]
        await tb.wait_imported(integration["id"])
        stored = await tb.daemon.store.get_credentials(integration["id"])
        assert stored["tenantId"] == sim.tenant_id  # from the id_token, not "common"
        assert stored["refreshToken"] in sim.refresh_tokens and len(stored["clientState"]) >= 32
        assert "Project Falcon" in {c["name"] for c in (await tb.chats(integration)).values()}
    finally:
        await tb.stop()


async def test_credentials_put_without_a_client_state_get_one_and_new_subscriptions(tb, sim, ids, teams):
    old = {e["id"] for e in (await maintained(tb, teams))["subscriptions"].values()}
    response = await tb.api.put(f"/integrations/{teams['id']}/credentials", json={"credentials": grant(sim)})
    assert response.status_code == 200, response.text
    await tb.engine.wait_background()  # new credentials start a maintenance run at once
    stored = await tb.daemon.store.get_credentials(teams["id"])
    assert len(stored["clientState"]) >= 32
    assert not old & set(sim.subscriptions) and len(sim.subscriptions) == 2
    assert {s["_clientState"] for s in sim.subscriptions.values()} == {stored["clientState"]}
    sim.take_deliveries()
    sim.post(ids["dm"], ids["megan"], "after new credentials", content_type="text")
    [delivery] = sim.take_deliveries()
    assert (await deliver(tb, teams, delivery)).status_code == 202
    await tb.settle()
    assert "after new credentials" in [m["text"] for m in await chat_messages(tb, teams, ids["dm"])]
