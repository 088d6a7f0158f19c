"""WeChat Official Account through the HTTP API: the GET server check, plain, compatible and
safe-mode pushes answered ``success``, documented samples, duplicates, the access token (one
fetch, refreshed on 42001), Customer Service sends on the wire, and 45015/45047 as failed
states without retries."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

import pytest
from apisupport import assert_error, chat_messages, load_fixture

from syncd.providers.wechat import wire
from syncd.providers.wechat.sim import WeChatDelivery, WeChatSimulator
from syncd.testbed import Testbed

FIXTURE = load_fixture("wechat")
USER = "oyORnuP8q7ou2gfYjqLzSIWZf0rs"


@pytest.fixture
def sim() -> WeChatSimulator:
    return WeChatSimulator()


@pytest.fixture
async def tb(sim):
    tb = await Testbed.start(sims={"wechat": sim})
    yield tb
    await tb.stop()


@pytest.fixture
async def wc(tb, sim) -> dict[str, Any]:
    return await tb.create("wechat", sim.trial_credentials())


def app_event(event_id: str, text: str, to: str = USER) -> dict[str, Any]:
    return {"id": event_id, "type": "message.created", "customerId": "cust-1", "platform": "wechat",
            "externalChatId": to, "message": {"id": f"app-{event_id}", "text": text}}


async def app_messages(tb: Testbed, integration: dict[str, Any], chat: str = USER) -> list[dict[str, Any]]:
    return [m for m in await chat_messages(tb, integration, chat) if m["origin"] == "app"]


# -- the integration and the server check ---------------------------------------------------

async def test_an_absent_token_is_generated_as_wechat_accepts_it_and_shown_in_setup(tb, sim):
    credentials = {"appId": sim.app_id, "appSecret": sim.app_secret}
    response = await tb.api.post("/integrations", json={"platform": "wechat", "customerId": "cust-1",
                                                        "credentials": credentials})
    assert response.status_code == 201, response.text
    assert sim.app_secret not in response.text
    integration = response.json()["integration"]
    assert integration["setup"]["webhookUrl"] == integration["webhookUrl"]
    [setup] = integration["setup"]["fields"]
    assert setup["field"] == "token" and setup["where"].startswith("Token (")
    token = setup["value"]
    assert len(token) == 32 and token.isalnum()
    again = await tb.api.get(f"/integrations/{integration['id']}")
    assert token not in again.text and "setup" not in again.json()
    answer = await tb.api.get(tb.webhook_url(integration), params=sim.server_check(token=token))
    assert answer.status_code == 200


@pytest.mark.parametrize(("field", "value"), [("token", "has spaces"), ("encodingAesKey", "tooshort")])
async def test_malformed_credentials_answer_422_without_echoing_them(tb, sim, field, value):
    credentials = {**sim.trial_credentials(), field: value}
    response = await tb.api.post("/integrations", json={"platform": "wechat", "customerId": "cust-1",
                                                        "credentials": credentials})
    error = assert_error(response, 422, "invalid_credentials")
    assert [d["field"] for d in error["details"]] == [field] and value not in response.text


async def test_the_server_check_echoes_echostr_as_text_and_a_wrong_signature_is_refused(tb, sim, wc):
    query = sim.server_check()
    answer = await tb.api.get(tb.webhook_url(wc), params=query)
    assert (answer.status_code, answer.text) == (200, query["echostr"])
    assert answer.headers["content-type"].startswith("text/plain")
    wrong = await tb.api.get(tb.webhook_url(wc), params=sim.server_check(token="another"))
    assert_error(wrong, 401)
    unsigned = await tb.api.get(tb.webhook_url(wc), params={"echostr": "123"})
    assert_error(unsigned, 401)


# -- pushes -----------------------------------------------------------------------------------

async def deliver(tb: Testbed, integration: dict[str, Any], delivery: WeChatDelivery):
    return await tb.api.post(f"{tb.webhook_url(integration)}?{delivery.query}", content=delivery.body,
                             headers=delivery.headers)


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
async def test_a_push_in_each_mode_is_answered_success_and_stored_once(tb, sim, wc, mode):
    delivery = sim.user_message(USER, f"hello in {mode}", mode=mode)
    for _ in range(3):  # WeChat retries a push it got no answer to
        answer = await deliver(tb, wc, delivery)
        assert (answer.status_code, answer.text) == (200, "success")
        assert answer.headers["content-type"].startswith("text/plain")
    await tb.settle()
    [message] = await chat_messages(tb, wc, USER)
    assert (message["text"], message["externalMessageId"]) == (f"hello in {mode}", delivery.fields["MsgId"].__str__())
    assert (await tb.chats(wc))[USER]["kind"] == "dm"


async def test_the_documented_samples_become_messages_with_exact_msgids(tb, sim, wc):
    samples = FIXTURE["xml_samples"]
    for name in ("text", "image", "voice", "location"):
        body = samples[name].encode()
        timestamp, nonce = "1348831860", "42"
        query = urlencode({"signature": wire.signature(sim.token, timestamp, nonce),
                           "timestamp": timestamp, "nonce": nonce})
        answer = await tb.api.post(f"{tb.webhook_url(wc)}?{query}", content=body, headers={"content-type": "text/xml"})
        assert answer.status_code == 200, answer.text
    await tb.settle()
    # Every sample has MsgId 1234567890123456: the first is stored, the others are its redeliveries.
    [message] = await chat_messages(tb, wc, "fromUser")
    assert (message["externalMessageId"], message["text"]) == ("1234567890123456", "this is a test")
    assert message["sentAt"].startswith("2012-09-28")


async def test_the_decrypted_tencent_sample_keeps_its_int64_msgid(tb, sim, wc):
    delivery = sim.push(wire.parse_xml(FIXTURE["xml_samples"]["real_text_message_decrypted_from_tencent_sample"].encode()))
    assert (await deliver(tb, wc, delivery)).status_code == 200
    await tb.settle()
    [message] = await chat_messages(tb, wc, USER)
    assert (message["externalMessageId"], message["text"]) == ("6054768590064713728", "abcdteT")


async def test_a_follow_event_makes_the_chat_and_its_redelivery_is_a_duplicate(tb, sim, wc):
    delivery = sim.subscribe("oNewFollower")
    for _ in range(2):
        assert (await deliver(tb, wc, delivery)).text == "success"
    await tb.settle()
    assert "oNewFollower" in await tb.chats(wc)
    assert await chat_messages(tb, wc, "oNewFollower") == []
    assert (await tb.api.get(f"/integrations/{wc['id']}/status")).json()["inbox"]["done"] == 1


@pytest.mark.parametrize("tamper", ["signature", "msg_signature"])
async def test_a_tampered_signature_is_refused(tb, sim, wc, tamper):
    delivery = sim.user_message(USER, "hi", mode="safe")
    query = dict(item.split("=", 1) for item in delivery.query.split("&"))
    query[tamper] = "0" * 40
    answer = await tb.api.post(f"{tb.webhook_url(wc)}?{urlencode(query)}", content=delivery.body,
                               headers=delivery.headers)
    assert_error(answer, 401)


async def test_a_push_encrypted_for_another_app_or_key_is_refused(tb, sim, wc):
    other = WeChatSimulator(token=sim.token)
    for delivery in (other.user_message(USER, "hi"),):
        answer = await deliver(tb, wc, delivery)
        assert answer.status_code in (400, 401), answer.text
    await tb.settle()
    assert await chat_messages(tb, wc, USER) == []


async def test_a_safe_mode_push_without_an_encodingaeskey_is_refused_with_a_reason(tb, sim):
    credentials = {k: v for k, v in sim.trial_credentials().items() if k != "encodingAesKey"}
    integration = await tb.create("wechat", credentials)
    answer = await deliver(tb, integration, sim.user_message(USER, "hi", mode="safe"))
    assert "encodingAesKey" in assert_error(answer, 400)["message"]
    plain_copy = await deliver(tb, integration, sim.user_message(USER, "compatible", mode="compatible"))
    assert plain_copy.text == "success"


# -- sending ------------------------------------------------------------------------------------

async def test_a_reply_goes_through_the_customer_service_api_with_one_token(tb, sim, wc):
    await deliver(tb, wc, sim.user_message(USER, "hi"))
    for i in range(2):
        assert (await tb.post_event(app_event(f"evt-{i}", f"answer {i}"))).status_code == 202
    await tb.settle()
    assert sim.sent_bodies == [{"touser": USER, "msgtype": "text", "text": {"content": f"answer {i}"}} for i in range(2)]
    assert sim.token_fetches == 1
    sent = await app_messages(tb, wc)
    assert sorted(m["externalMessageId"] for m in sent) == ["app:app-evt-0", "app:app-evt-1"]
    assert {m["deliveryState"] for m in sent} == {"sent"}


@pytest.mark.parametrize("stale", ["expired", "replaced"])
async def test_a_stale_access_token_is_fetched_again_and_the_send_repeated(tb, sim, wc, stale):
    await deliver(tb, wc, sim.user_message(USER, "hi"))
    await tb.post_event(app_event("evt-1", "first"))
    await tb.settle()
    if stale == "expired":
        sim.expire_token()
    else:
        sim.access_token = "issued-to-another-server"
    await tb.post_event(app_event("evt-2", "second"))
    await tb.settle()
    assert [b["text"]["content"] for b in sim.sent_bodies] == ["first", "second"]
    assert sim.token_fetches == 2
    assert await tb.daemon.store.list_outbox(status="dead") == []


@pytest.mark.parametrize(("setup", "errcode", "words"), [
    ("window", 45015, "48-hour"), ("quota", 45047, "quota"),
])
async def test_window_and_quota_errors_fail_the_message_at_once(tb, sim, wc, setup, errcode, words):
    await deliver(tb, wc, sim.user_message(USER, "hi"))
    if setup == "window":
        sim.followers[USER].last_action -= 49 * 3600
    else:
        sim.followers[USER].replies_left = 0
    await tb.post_event(app_event("evt-late", "too late"))
    await tb.settle()
    [dead] = await tb.daemon.store.list_outbox(status="dead")
    assert dead.attempts == 1 and str(errcode) in dead.error and words in dead.error
    assert sim.app_secret not in dead.error
    [message] = await app_messages(tb, wc)
    assert message["deliveryState"] == "failed"
    assert sim.faults.calls["custom_send"] == 1 and sim.sent_bodies == []


async def test_throttling_in_a_200_body_is_waited_out_then_sent(tb, sim, wc):
    await deliver(tb, wc, sim.user_message(USER, "hi"))
    sim.faults.fail_next("custom_send")
    await tb.post_event(app_event("evt-1", "hello"))
    await tb.settle()
    assert sim.faults.calls["custom_send"] == 2
    assert [b["text"]["content"] for b in sim.sent_bodies] == ["hello"]


async def test_a_wrong_appsecret_is_an_auth_failure_that_never_shows_the_secret(tb, sim):
    wrong = "f" * 32
    integration = await tb.create("wechat", {**sim.trial_credentials(), "appSecret": wrong}, wait=False)
    await tb.post_event(app_event("evt-1", "hello"))
    own = f"/integrations/{integration['id']}"
    for _ in range(500):
        view = (await tb.api.get(own)).text
        if "40125" in view:
            break
        await asyncio.sleep(0.01)
    assert "40125" in view and '"error"' in view
    assert wrong not in view and wrong not in (await tb.api.get(f"{own}/status")).text
    assert sim.sent_bodies == [] and sim.token_fetches == 0
