"""Hostile bodies on every endpoint that reads one, webhooks included and validly signed so the
body is really parsed: JSON nested 100,000 deep, huge numbers, invalid UTF-8 and NUL bytes. No
answer is a 5xx, every refusal is in the JSON error format, and a validly signed body that is not
JSON is never answered 401 (that means a bad signature)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from syncd.providers.messenger.sim import MessengerSimulator
from syncd.providers.telegram.sim import TelegramSimulator
from syncd.providers.whatsapp.sim import WhatsAppSimulator
from syncd.testbed import APP_SECRET, Testbed

HOSTILE = {
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "deep-object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "huge-number": b'{"id": ' + b"9" * 100_000 + b"}",
    "huge-float": b'{"id": 1e999999}',
    "invalid-utf8": b'{"id": "\xff\xfe\xc3"}',
    "nul": b'{"id": "a\x00b", "type": "message.created\x00"}',
    "not-json": b"<xml>surely not json</xml>",
}
META_SECRET = "hostile-app-secret"


def _hub(body: bytes) -> dict[str, str]:
    digest = hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-hub-signature-256": f"sha256={digest}"}


def _slack(secret: str):
    def sign(body: bytes) -> dict[str, str]:
        ts = str(int(time.time()))
        digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
        return {"content-type": "application/json", "x-slack-request-timestamp": ts, "x-slack-signature": f"v0={digest}"}
    return sign


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture
async def tb():
    sims = {
        "messenger": MessengerSimulator(page_id="111", page_name="P", valid_tokens=["EAAG-hostile-page"],
                                        app_secret=META_SECRET, verify_token="v-hostile-1"),
        "whatsapp": WhatsAppSimulator(phone_number_id="222", valid_tokens=["EAAG-hostile-wa"],
                                      app_secret=META_SECRET, verify_token="v-hostile-2"),
        "telegram": TelegramSimulator(),
    }
    bed = await Testbed.start(sims=sims)
    yield bed
    await bed.stop()


async def _signed_webhooks(tb) -> list[tuple[str, Any]]:
    """(webhook path, signer) of one integration per platform."""
    tb.slack.seed_workspace()
    slack = await tb.create_slack(wait=False)
    messenger = await tb.create_messenger(wait=False)
    whatsapp = await tb.create_whatsapp(wait=False)
    telegram = await tb.create_telegram(wait=False)
    secret = (await tb.daemon.store.get_credentials(telegram["id"]))["secretToken"]
    return [
        (tb.webhook_url(slack), _slack(tb.slack.signing_secret)),
        (tb.webhook_url(messenger), _hub),
        (tb.webhook_url(whatsapp), _hub),
        (tb.webhook_url(telegram), lambda _: {"content-type": "application/json",
                                              "x-telegram-bot-api-secret-token": secret}),
    ]


def _assert_refused_cleanly(response, where: str) -> None:
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:200]}"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), where


async def test_hostile_bodies_on_signed_webhooks_and_events_never_give_a_5xx_nor_a_401(tb):
    webhooks = await _signed_webhooks(tb)
    for name, body in HOSTILE.items():
        signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        response = await tb.api.post("/events", content=body, headers={
            "content-type": "application/json", "x-syncd-signature": signature})
        _assert_refused_cleanly(response, f"/events {name}")
        assert response.status_code in (400, 422), f"/events {name}: {response.status_code}"
        for path, sign in webhooks:
            response = await tb.api.post(path, content=body, headers=sign(body))
            _assert_refused_cleanly(response, f"{path} {name}")
            assert response.status_code != 401, f"{path} {name}: a valid signature answered 401"


@pytest.mark.parametrize("path", ["/integrations", "/user-platforms", "/integrations/x/credentials",
                                  "/integrations/x/chats/import", "/integrations/x/resync"])
async def test_hostile_bodies_on_admin_endpoints_never_give_a_5xx(tb, path):
    method = "PUT" if path in ("/user-platforms", "/integrations/x/credentials") else "POST"
    for name, body in HOSTILE.items():
        response = await tb.api.request(method, path, content=body, headers={"content-type": "application/json"})
        _assert_refused_cleanly(response, f"{method} {path} {name}")


@pytest.mark.parametrize("cursor", [
    "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzIzOjU5IiwgIngiXQ",  # ["0001-01-01T00:00:00+23:59", "x"]
    "WyI5OTk5LTEyLTMxVDIzOjU5OjU5LTIzOjU5IiwgIngiXQ",  # ["9999-12-31T23:59:59-23:59", "x"]
    "\x00", "%ff", "a" * 5000])
async def test_a_cursor_out_of_range_is_a_400(tb, cursor):
    tb.slack.seed_workspace()
    slack = await tb.create_slack()
    chat = next(iter((await tb.chats(slack)).values()))
    response = await tb.api.get(f"/chats/{chat['id']}/messages", params={"cursor": cursor})
    _assert_refused_cleanly(response, cursor)
    assert response.status_code == 400


async def test_admin_endpoints_answer_401_before_reading_a_malformed_body(tb, anon):
    for method, path in (("POST", "/integrations"), ("PUT", "/user-platforms"),
                         ("PUT", "/integrations/x/credentials"), ("POST", "/integrations/x/resync")):
        for body in (b"{not json", HOSTILE["deep"]):
            response = await anon.request(method, path, content=body, headers={"content-type": "application/json"})
            assert response.status_code == 401, f"{method} {path}: {response.status_code}"
            assert response.json()["error"]["code"] == "unauthorized"


async def test_an_upper_case_hex_signature_is_accepted_on_events_and_slack_webhooks(tb):
    ids = tb.slack.seed_workspace()
    slack = await tb.create_slack()
    event = {"id": "evt-upper", "type": "message.created", "customerId": "cust-1", "platform": "slack",
             "externalChatId": ids["general"], "message": {"id": "app-upper", "text": "hi"}}
    body = json.dumps(event).encode()
    digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest().upper()
    response = await tb.api.post("/events", content=body, headers={
        "content-type": "application/json", "x-syncd-signature": f"sha256={digest}"})
    assert response.status_code == 202, response.text

    delivery = tb.slack.post_user_message(ids["general"], "upper", ids["bob"])
    headers = dict(delivery.headers)
    key = next(k for k in headers if k.lower() == "x-slack-signature")
    headers[key] = "v0=" + headers[key][3:].upper()
    assert (await tb.api.post(tb.webhook_url(slack), content=delivery.body, headers=headers)).status_code == 200


@pytest.fixture
async def anon(tb, anon_client):
    return anon_client(tb)
