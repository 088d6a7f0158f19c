"""Twilio SMS through the HTTP API: the number's SmsUrl set by maintenance, history imported
both ways per counterpart, inbound form deliveries checked against the public webhook URL,
status callbacks becoming delivery states, sends with their exact form, deletes, and errors."""

from __future__ import annotations

from typing import Any

import pytest
from apisupport import assert_error, chat_messages, find_message

from syncd.providers.twilio.sim import TwilioSimulator, signature
from syncd.testbed import BASE, Testbed

ANN, BO = "+14155550101", "+14155550102"


@pytest.fixture
def sim() -> TwilioSimulator:
    sim = TwilioSimulator()
    for i in range(5):
        sim.add(ANN, f"ann says {i}", inbound=True)
        sim.add(ANN, f"we answer ann {i}", inbound=False)
    sim.add(BO, "bo says hi", inbound=True)
    return sim


@pytest.fixture
async def tb(sim):
    tb = await Testbed.start(sims={"twilio": sim})
    yield tb
    await tb.stop()


async def connect(tb: Testbed, sim: TwilioSimulator) -> dict[str, Any]:
    integration = await tb.create("twilio", sim.trial_credentials())
    await tb.engine.maintain(integration["id"])
    return integration


async def test_history_is_imported_both_ways_in_pages_and_the_number_gets_the_webhook(tb, sim):
    integration = await connect(tb, sim)
    assert sim.sms_url == integration["webhookUrl"] and sim.sms_url.startswith(BASE)
    chats = await tb.chats(integration)
    assert set(chats) == {ANN, BO}
    ann = await chat_messages(tb, integration, ANN)
    assert sorted(m["text"] for m in ann) == sorted([f"ann says {i}" for i in range(5)]
                                                  + [f"we answer ann {i}" for i in range(5)])
    assert len(await chat_messages(tb, integration, BO)) == 1


async def test_history_follows_next_page_uri(tb, sim):
    from syncd.providers.twilio.connector import TwilioConnector
    TwilioConnector.page_limit = 3
    try:
        integration = await connect(tb, sim)
    finally:
        TwilioConnector.page_limit = None
    assert len(await chat_messages(tb, integration, ANN)) == 10
    assert sim.faults.calls["list"] >= 2 * 4  # two legs of 5 in pages of 3, for listing and for history


async def test_an_inbound_sms_is_stored_once_and_answered_with_empty_twiml(tb, sim):
    integration = await connect(tb, sim)
    delivery = sim.inbound(ANN, "hello from the phone", url=integration["webhookUrl"])
    for _ in range(2):
        answer = await tb.deliver(integration, delivery)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/xml") and answer.text == "<Response/>"
    await tb.settle()
    found = [m for m in await chat_messages(tb, integration, ANN) if m["text"] == "hello from the phone"]
    assert len(found) == 1


async def test_the_signature_is_checked_against_the_public_url_not_the_arrival_url(tb, sim):
    integration = await connect(tb, sim)
    params = {"MessageSid": "SM" + "1" * 32, "From": ANN, "To": sim.number, "Body": "x"}
    behind_proxy = "http://10.0.0.7:8080" + tb.webhook_url(integration)
    wrong = sim.signed(behind_proxy, params)
    assert (await tb.deliver(integration, wrong)).status_code == 401
    ported = integration["webhookUrl"].replace(BASE, BASE + ":80")
    assert (await tb.deliver(integration, sim.signed(ported, params))).status_code == 200
    tampered = sim.signed(integration["webhookUrl"], params)
    tampered.body = tampered.body.replace(b"Body=x", b"Body=y")
    answer = await tb.deliver(integration, tampered)
    assert_error(answer, 401, "bad_signature")


async def test_a_json_body_is_covered_by_body_sha256(tb, sim):
    import hashlib
    integration = await connect(tb, sim)
    body = b'{"MessageSid": "SMjson"}'
    digest = hashlib.sha256(body).hexdigest()
    url = integration["webhookUrl"] + f"?bodySHA256={digest}"
    headers = {"content-type": "application/json", "x-twilio-signature": signature(sim.auth_token, url, {})}
    path = tb.webhook_url(integration)
    assert (await tb.api.post(f"{path}?bodySHA256={digest}", content=body, headers=headers)).status_code in (200, 400)
    forged = await tb.api.post(f"{path}?bodySHA256={digest}", content=b'{"MessageSid": "SMforged"}', headers=headers)
    assert_error(forged, 401, "bad_signature")
    unsigned_digest = {**headers, "x-twilio-signature": signature(sim.auth_token, integration["webhookUrl"], {})}
    assert (await tb.api.post(path, content=body, headers=unsigned_digest)).status_code == 401


async def test_a_send_posts_the_form_with_status_callback_and_callbacks_set_the_state(tb, sim):
    integration = await connect(tb, sim)
    answer = await tb.post_event({"id": "evt-tw-1", "type": "message.created", "customerId": "cust-1",
                                  "platform": "twilio", "externalChatId": ANN,
                                  "message": {"id": "app-1", "text": "hi ann"}})
    assert answer.status_code == 202
    await tb.settle()
    assert sim.sent_forms == [{"To": ANN, "Body": "hi ann", "From": sim.number,
                               "StatusCallback": integration["webhookUrl"]}]
    sid = next(m.sid for m in sim.truth() if m.text == "hi ann")
    for status in ("sent", "delivered"):
        assert (await tb.deliver(integration, sim.status_callback(sid, status))).status_code == 200
    await tb.settle()
    stored = await find_message(tb, integration, ANN, sid)
    assert stored["deliveryState"] == "delivered" and stored["text"] == "hi ann"


async def test_a_delete_removes_the_message_and_an_edit_is_refused(tb, sim):
    await connect(tb, sim)
    await tb.post_event({"id": "evt-tw-2", "type": "message.created", "customerId": "cust-1", "platform": "twilio",
                         "externalChatId": ANN, "message": {"id": "app-2", "text": "to delete"}})
    await tb.settle()
    answer = await tb.post_event({"id": "evt-tw-3", "type": "message.deleted", "customerId": "cust-1",
                                  "platform": "twilio", "message": {"id": "app-2"}})
    assert answer.status_code == 202
    await tb.settle()
    assert all(m.deleted for m in sim.truth() if m.text == "to delete")
    edit = await tb.post_event({"id": "evt-tw-4", "type": "message.updated", "customerId": "cust-1",
                                "platform": "twilio", "message": {"id": "app-2", "text": "changed"}})
    assert_error(edit, 422, "unsupported")


async def test_a_rate_limited_send_is_retried(tb, sim):
    integration = await connect(tb, sim)
    sim.faults.fail_next("send", times=2)
    await tb.post_event({"id": "evt-tw-5", "type": "message.created", "customerId": "cust-1", "platform": "twilio",
                         "externalChatId": BO, "message": {"id": "app-5", "text": "after a wait"}})
    await tb.settle()
    assert [f["Body"] for f in sim.sent_forms] == ["after a wait"]
    assert integration["id"]


async def test_wrong_credentials_are_refused_clearly_and_smooch_sample_tokens_accepted(tb, sim):
    bad = await tb.api.post("/integrations", json={"platform": "twilio", "customerId": "c",
                                                   "credentials": {**sim.trial_credentials(), "accountSid": "nope"}})
    assert_error(bad, 422)
    assert "nope" not in bad.text
    # Smooch's sample auth token has 33 characters: no length is imposed.
    sim.auth_token = "160c024303f53049e1e060fd67ca6aefc"
    creds = sim.trial_credentials()
    answer = await tb.api.post("/integrations", json={"platform": "twilio", "customerId": "c", "credentials": creds})
    assert answer.status_code == 201, answer.text
    assert "160c024303f53049e1e060fd67ca6aefc" not in answer.text

