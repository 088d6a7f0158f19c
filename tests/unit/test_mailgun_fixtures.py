"""Mailgun's documented signature vectors and samples against syncd's verifier from the
manifest (the signature in the body, over timestamp + token), with the clock at their time;
stale deliveries refused; a route's form read in both encodings; Message-IDs without brackets."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest

from syncd import providers
from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import SignatureError
from syncd.kit.http import ProviderHttp
from syncd.kit.loader import load_all
from syncd.mapping import TRANSFORMS
from syncd.providers.mailgun.connector import form_fields, threaded
from syncd.providers.mailgun.sim import MailgunSimulator
from syncd.universal import WebhookRequest

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "mailgun.json").read_text())
LOADED = load_all()["mailgun"]
JSON = {"content-type": "application/json"}


def connector(key: str, clock: float):
    cls = providers.connector_for(LOADED)
    ctx = ConnectorContext(http=ProviderHttp("http://platform.invalid"), mapping=LOADED.mapping,
                           webhook_url="https://syncd.test/webhooks/mailgun/1", clock=lambda: clock)
    creds = cls.Credentials.model_construct(apiKey="k", domain="mg.example.com", incomingAddress="a@mg.example.com",
                                            webhookSigningKey=key)
    return cls(creds, {}, ctx)


@pytest.mark.parametrize("vector", FIXTURE["signature_vectors"], ids=["valid", "token-swapped"])
def test_a_documented_vector_verifies_as_documented_at_its_time(vector):
    subject = connector(vector["secret"], float(vector["params"]["timestamp"]))
    request = WebhookRequest("POST", "https://syncd.test/h", JSON, {}, json.dumps(vector["body"]).encode())
    if vector["expect_valid"]:
        assert subject.accept_webhook(request).delivery_id == vector["params"]["token"]
    else:
        with pytest.raises(SignatureError):
            subject.accept_webhook(request)


def test_the_documented_vector_as_a_route_form_verifies_and_goes_stale():
    vector = FIXTURE["signature_vectors"][0]
    form = {"sender": "bob@example.net", "subject": "Hi", "body-plain": "x", **vector["params"]}
    request = WebhookRequest("POST", "https://syncd.test/h", {"content-type": "application/x-www-form-urlencoded"},
                             {}, urlencode(form).encode())
    stamp = float(vector["params"]["timestamp"])
    assert connector(vector["secret"], stamp + 10).accept_webhook(request).delivery_id == vector["params"]["token"]
    with pytest.raises(SignatureError, match="replay window"):
        connector(vector["secret"], stamp + 3600).accept_webhook(request)


async def test_the_documented_route_sample_is_threaded_under_the_mail_it_answers():
    sample = next(s for s in FIXTURE["samples"] if isinstance(s["payload"], str))
    doc = threaded(form_fields("application/x-www-form-urlencoded", sample["payload"].encode()))
    assert doc["messageId"] == "CAFoo123@mail.example.net"
    parent = "20130812164300.28108.52546@samples.mailgun.org"
    assert doc["threadId"] == threaded({"message-headers": json.dumps([["Message-Id", f"<{parent}>"]])})["threadId"]
    assert doc["referencesChain"] == "<CAFoo123@mail.example.net>"


def test_a_multipart_route_post_reads_like_a_urlencoded_one():
    sim = MailgunSimulator()
    plain = sim.route_post("bob@example.net", "Hi", "héllo")
    multi = sim.route_post("bob@example.net", "Hi", "héllo", multipart=True)
    a = form_fields(plain.headers["content-type"], plain.body)
    b = form_fields(multi.headers["content-type"], multi.body)
    assert {k: v for k, v in a.items() if k not in ("token", "signature", "message-headers")} == \
        {k: v for k, v in b.items() if k not in ("token", "signature", "message-headers")}
    assert "attachment-1" not in b and b["body-plain"] == "héllo"


def test_message_ids_lose_their_angle_brackets():
    send = next(s for s in FIXTURE["samples"] if s["kind"] == "send_response")
    assert TRANSFORMS["message_id"](send["payload"]["id"]) == "20111114174239.25659.5817@samples.mailgun.org"
    assert TRANSFORMS["message_id"]("x@y") == "x@y"
