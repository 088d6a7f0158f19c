"""The MessageBird simulator checked with MessageBird's official Python SDK (``messagebird``,
offline): its request validator and its deprecated legacy ``SignedRequest`` on the documented
vectors and on every delivery the simulator signs, and its REST client against the simulator
(balance, send, read one, list pages with offsets, errors)."""

from __future__ import annotations

import hashlib
import json
import warnings
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from messagebird import Client
from messagebird.client import ErrorException
from messagebird.error import ValidationError
from messagebird.http_client import HttpClient
from messagebird.request_validator import RequestValidator
from messagebird.signed_request import SignedRequest

from syncd.providers.messagebird.sim import MessageBirdSimulator
from syncd.sim.base import ServerThread

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "messagebird.json").read_text())[
    "signature_vectors"]
URL = "https://syncd.example/webhooks/messagebird/i1"


def _legacy_valid(signature: str, stamp: str, body: bytes, params: dict[str, str], key: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return SignedRequest(signature, stamp, body.decode("latin-1"), params).verify(key)


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["scheme"] == "MessageBird-Signature"], ids=lambda v: v["name"])
def test_the_sdk_agrees_with_the_documented_legacy_vectors(vector):
    headers = vector["headers"]
    valid = _legacy_valid(headers["MessageBird-Signature"], headers["MessageBird-Request-Timestamp"],
                          vector["body"].encode(), vector["params"], vector["secret"])
    assert valid is vector["expect_valid"]


def test_the_sdk_validates_every_delivery_the_simulator_signs():
    sim = MessageBirdSimulator(webhook_url=URL)
    validator = RequestValidator(sim.signing_key)
    posted = sim.inbound("31612345678", "héllo")
    claims = validator.validate_signature(posted.headers["messagebird-signature-jwt"], URL, posted.body)
    assert claims["payload_hash"] == hashlib.sha256(posted.body).hexdigest()
    assert dict(parse_qsl(posted.body.decode()))["body"] == "héllo"
    got = sim.inbound("31612345678", "by GET", method="GET")
    validator.validate_signature(got.headers["messagebird-signature-jwt"], f"{URL}?{got.query}", b"")
    sent = sim.add("mt", "31612345678", "out")
    sent.report_url = URL
    report = sim.status_report(sent.id, "delivered", legacy=True)
    validator.validate_signature(report.headers["messagebird-signature-jwt"], f"{URL}?{report.query}", b"")
    assert _legacy_valid(report.headers["messagebird-signature"], report.headers["messagebird-request-timestamp"],
                         b"", dict(parse_qsl(report.query, keep_blank_values=True)), sim.signing_key)


def test_the_sdk_refuses_a_delivery_signed_with_another_key_or_for_another_url():
    sim = MessageBirdSimulator(webhook_url=URL)
    forged = sim.inbound("31612345678", "x", key="f" * 64)
    with pytest.raises(ValidationError):
        RequestValidator(sim.signing_key).validate_signature(forged.headers["messagebird-signature-jwt"], URL, forged.body)
    honest = sim.inbound("31612345678", "y")
    with pytest.raises(ValidationError, match="url_hash"):
        RequestValidator(sim.signing_key).validate_signature(honest.headers["messagebird-signature-jwt"],
                                                             URL + "-elsewhere", honest.body)


@pytest.fixture
def served():
    sim = MessageBirdSimulator()
    with ServerThread(sim) as server:
        yield sim, Client(sim.access_key, HttpClient(server.url + "/", sim.access_key, "syncd-tests"))


def test_the_sdk_client_sends_reads_and_checks_the_balance(served):
    sim, client = served
    assert client.balance().amount == 100.0
    message = client.message_create(sim.originator, ["31612345678", "31687654321"], "hello",
                                    {"reference": "app-1", "reportUrl": URL})
    assert len(message.id) == 32 and message.direction == "mt" and message.body == "hello"
    assert isinstance(message.createdDatetime, datetime)
    assert message.recipients["items"][0].recipient == 31612345678
    assert sim.sent_bodies[0]["recipients"] == "31612345678,31687654321"  # the SDK joins them
    again = client.message(message.id)
    assert (again.id, again.reference, again.originator) == (message.id, "app-1", sim.originator)


def test_the_sdk_client_pages_through_the_list_with_offsets(served):
    sim, client = served
    made = [sim.add("mo" if i % 2 else "mt", "31612345678", f"m{i}", minutes_ago=20 - i).id for i in range(7)]
    seen, offset = [], 0
    while True:
        page = client.message_list(limit=3, offset=offset)
        assert page.totalCount == 7 and page.count == len(page.items)
        if not page.items:
            break
        seen += [m.id for m in page.items]
        offset += page.count
    assert seen == list(reversed(made))  # newest first, each once
    assert page.links.next is None


def test_the_sdk_client_raises_messagebirds_errors(served):
    sim, client = served
    with pytest.raises(ErrorException) as missing:
        client.message("0" * 32)
    assert missing.value.errors[0].code == 20
    with pytest.raises(ErrorException) as refused:
        client.message_create(sim.originator, [], "no one")
    assert refused.value.errors[0].code == 9 and refused.value.errors[0].parameter == "recipients"
    wrong = Client("live_wrong", HttpClient(client.http_client.endpoint, "live_wrong", "syncd-tests"))
    with pytest.raises(ErrorException) as unauthorised:
        wrong.balance()
    assert unauthorised.value.errors[0].code == 2
