"""The LINE simulator checked with LINE's official Python SDK (line-bot-sdk, offline): its
signature validator on the documented vectors and on the simulator's deliveries, its webhook
parser on every delivery the simulator builds, and its API client against the simulator."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from linebot.v3 import WebhookParser
from linebot.v3.exceptions import InvalidSignatureError
from linebot.v3.messaging import (
    ApiClient,
    ApiException,
    Configuration,
    MessagingApi,
    PushMessageRequest,
    TextMessage,
)
from linebot.v3.webhook import SignatureValidator
from linebot.v3.webhooks import FollowEvent, JoinEvent, MessageEvent, TextMessageContent, UnsendEvent

from syncd.providers.line.sim import LineSimulator
from syncd.sim.base import ServerThread

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "line.json").read_text())
ANN, GROUP, ROOM = "U" + "a1" * 16, "C" + "c3" * 16, "R" + "d4" * 16


@pytest.mark.parametrize("vector", FIXTURE["signature_vectors"], ids=lambda v: v["headers"]["X-Line-Signature"][:12])
def test_the_sdk_agrees_with_the_documented_vectors(vector):
    valid = SignatureValidator(vector["secret"]).validate(vector["body"], vector["headers"]["X-Line-Signature"])
    assert valid is vector.get("expect_valid", True)


def test_the_sdk_parses_and_validates_every_delivery_the_simulator_builds():
    sim = LineSimulator()
    first = sim.message(ANN, "héllo")
    delivery = sim.deliver(sim.follow(ANN, "Ann"), sim.join(GROUP, "Ops"), sim.join(ROOM), first,
                           sim.message(GROUP, "in a group", ANN), sim.unsend(first["message"]["id"]))
    parser = WebhookParser(sim.secret)
    events = parser.parse(delivery.body.decode(), delivery.headers["x-line-signature"])
    assert [type(e) for e in events] == [FollowEvent, JoinEvent, JoinEvent, MessageEvent, MessageEvent, UnsendEvent]
    assert isinstance(events[3].message, TextMessageContent) and events[3].message.text == "héllo"
    assert events[4].source.group_id == GROUP and events[4].source.user_id == ANN
    assert events[5].unsend.message_id == first["message"]["id"]
    assert all(e.webhook_event_id and e.delivery_context.is_redelivery is False for e in events)
    again = sim.redeliver(delivery)
    assert all(e.delivery_context.is_redelivery for e in parser.parse(again.body.decode(), again.headers["x-line-signature"]))
    assert parser.parse(sim.verify_request().body.decode(), sim.verify_request().headers["x-line-signature"]) == []
    with pytest.raises(InvalidSignatureError):
        parser.parse(delivery.body.decode(), sim.sign(delivery.payload, secret="0" * 32).headers["x-line-signature"])


def test_the_sdk_client_pushes_with_a_retry_key_and_reads_profiles_from_the_simulator():
    sim = LineSimulator()
    sim.users[ANN] = "Ann Ames"
    sim.groups[GROUP] = "Ops team"
    with ServerThread(sim) as server:
        config = Configuration(access_token=sim.token, host=server.url)
        with ApiClient(config) as client:
            api = MessagingApi(client)
            key = str(uuid.uuid4())
            request = PushMessageRequest(to=ANN, messages=[TextMessage(text="hi")])
            sent = api.push_message(request, x_line_retry_key=key)
            assert sent.sent_messages[0].id == sim.retry_keys[key][0]["id"]
            with pytest.raises(ApiException) as conflict:
                api.push_message(request, x_line_retry_key=key)
            assert conflict.value.status == 409 and len(sim.pushes) == 1
            assert api.get_profile(ANN).display_name == "Ann Ames"
            assert api.get_group_summary(GROUP).group_name == "Ops team"
            assert api.get_bot_info().user_id == sim.bot_user_id
            sim.quota = 1
            with pytest.raises(ApiException) as quota:
                api.push_message(PushMessageRequest(to=ANN, messages=[TextMessage(text="more")]))
            assert quota.value.status == 429 and "monthly limit" in quota.value.body
