"""Gmail push notifications (Cloud Pub/Sub push) are verified by the endpoint's secret token."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import cast

import httpx
import pytest

from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import SignatureError
from syncd.kit.http import ProviderHttp
from syncd.mapping import load_mapping, mappings_dir
from syncd.providers import bound
from syncd.providers.gmail.connector import (
    GmailConnector,
    GmailCredentials,
    decode_push,
)
from syncd.providers.gmail.sim import GmailSimulator
from syncd.providers.mime import b64_decode
from syncd.universal import WebhookRequest

FIXTURES = json.loads((Path(__file__).parents[1] / "fixtures" / "gmail.json").read_text())
VECTOR = FIXTURES["push_vector"]
PUSH_TOKEN = "push-secret-7f3a"


def connector(push_token: str | None = PUSH_TOKEN, address: str = "User@Example.com") -> GmailConnector:
    credentials = GmailCredentials(access_token="ya29.x", email_address=address, push_token=push_token)
    ctx = ConnectorContext(http=ProviderHttp("http://gmail.invalid"), mapping=load_mapping(mappings_dir() / "gmail.yaml"),
                           webhook_url="https://syncd.example/webhooks/gmail/int-1")
    return cast(GmailConnector, bound("gmail")(credentials, {}, ctx))


def push(body: bytes | dict, token: str | None = PUSH_TOKEN) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    query = {"token": token} if token is not None else {}
    return WebhookRequest("POST", "https://syncd.example/webhooks/gmail/int-1", {"content-type": "application/json"},
                          query, raw)


def with_data(data: str) -> dict:
    body = json.loads(json.dumps(VECTOR["body"]))
    body["message"]["data"] = data
    return body


def test_the_documented_push_is_accepted_with_its_message_id_as_delivery_id():
    accepted = connector().accept_webhook(push(VECTOR["body"]))
    assert accepted.delivery_id == "2070443601311540"
    assert 200 <= accepted.answer.status_code < 300  # any 2xx acknowledges to Pub/Sub


def test_the_documented_data_decodes_to_its_bytes_not_its_prose():
    _, data = decode_push(json.dumps(VECTOR["body"]).encode())
    assert data == VECTOR["expected"] and data["historyId"] == "1234567890"
    assert b64_decode(VECTOR["body"]["message"]["data"]).decode() == VECTOR["expected_raw"]


@pytest.mark.parametrize("alphabet", ["standard", "urlsafe"])
@pytest.mark.parametrize("padding", [True, False])
def test_data_decodes_in_either_base64_alphabet_with_or_without_padding(alphabet, padding):
    # An address whose encoding contains '+'/'/' (or '-'/'_') and needs padding.
    raw = json.dumps({"emailAddress": "user+~?>@example.com", "historyId": "1234567890"}).encode()
    encode = base64.b64encode if alphabet == "standard" else base64.urlsafe_b64encode
    data = encode(raw).decode()
    assert set(data) & set("+/-_") and data.endswith("=")
    data = data if padding else data.rstrip("=")
    _, decoded = decode_push(json.dumps(with_data(data)).encode())
    assert decoded["historyId"] == "1234567890"
    assert connector().accept_webhook(push(with_data(data))).delivery_id == "2070443601311540"


def test_the_snake_case_message_id_of_real_pubsub_pushes_is_a_delivery_id_too():
    body = with_data(VECTOR["body"]["message"]["data"])
    body["message"] = {"data": body["message"]["data"], "message_id": "9911"}
    assert connector().accept_webhook(push(body)).delivery_id == "9911"


@pytest.mark.parametrize("token", [None, "", "push-secret-7f3b", PUSH_TOKEN + "x"])
def test_a_push_without_the_right_token_is_refused(token):
    with pytest.raises(SignatureError) as caught:
        connector().accept_webhook(push(VECTOR["body"], token=token))
    assert PUSH_TOKEN not in str(caught.value)


def test_without_a_configured_push_token_every_push_is_refused():
    with pytest.raises(SignatureError, match=r"not authenticated .* \?token \(needs credentials.pushToken\)"):
        connector(push_token=None).accept_webhook(push(VECTOR["body"], token="anything"))


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"message": {"data": "%%%"}}', b'{"message": {}}'])
def test_a_malformed_envelope_is_refused(body):
    with pytest.raises(SignatureError):
        connector().accept_webhook(push(body))


async def test_a_push_for_our_mailbox_asks_for_a_poll_case_insensitively():
    changes = await connector(address="USER@example.com").parse_webhook(push(VECTOR["body"]))
    assert changes.poll_requested and changes.messages == []


async def test_a_push_for_another_mailbox_changes_nothing():
    changes = await connector(address="someone-else@example.com").parse_webhook(push(VECTOR["body"]))
    assert not changes.poll_requested and changes.messages == [] and changes.chats == []


async def test_the_simulators_push_is_delivered_like_googles_and_accepted():
    sim = GmailSimulator("user@example.com")
    sim.add_incoming(None, "a@example.org", "Hi", "Hello")
    url = f"https://syncd.example/webhooks/gmail/int-1?token={PUSH_TOKEN}"
    received: list[httpx.Request] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint)) as client:
        answer = await sim.deliver(client, url, sim.push_notification(url))
    assert answer.status_code == 204
    [request] = received
    delivered = WebhookRequest("POST", str(request.url), dict(request.headers), dict(request.url.params), request.content)
    accepted = connector().accept_webhook(delivered)
    _, data = decode_push(request.content)
    assert accepted.delivery_id and data["historyId"] == str(sim.mailboxes["user@example.com"].history_id)
    assert (await connector().parse_webhook(delivered)).poll_requested
