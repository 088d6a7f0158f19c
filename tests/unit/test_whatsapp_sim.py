"""The Meta Graph simulator base and its WhatsApp part: real shapes (compared with the
documented samples), Meta's error envelope and throttling forms, signed deliveries."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd import providers
from syncd.kit import signatures
from syncd.kit.classify import classifier
from syncd.kit.errors import RateLimited
from syncd.providers import meta
from syncd.providers.meta.sim import GraphError, MetaGraphSimulator, meta_json
from syncd.providers.whatsapp.sim import WhatsAppSimulator
from syncd.universal import WebhookRequest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = json.loads((ROOT / "tests/fixtures/whatsapp.json").read_text())
TOKEN = "EAAG-sim-access-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def sample(contains: str) -> dict[str, Any]:
    return next(s for s in FIXTURES["samples"] if contains in s["description"])["payload"]


def keys(node: Any) -> Any:
    """The shape of a JSON value: dict keys recursively, first list item only."""
    if isinstance(node, dict):
        return {k: keys(v) for k, v in node.items()}
    if isinstance(node, list):
        return [keys(node[0])] if node else []
    return type(node).__name__


def value_of(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["entry"][0]["changes"][0]["value"]


class Clock:
    def __init__(self) -> None:
        self.at = 1_750_000_000.0

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock) -> WhatsAppSimulator:
    return WhatsAppSimulator(clock=clock)


@pytest.fixture
async def client(sim):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://graph.sim") as c:
        yield c


# -- delivery shapes match the documented samples --------------------------------------------

def test_an_incoming_text_has_the_documented_shape(sim):
    built = sim.incoming_text("16505551234", "Does it come in another color?", name="Sheena Nelson").payload
    documented = sample("official Meta docs")
    assert keys(built) == keys(documented)
    message = value_of(built)["messages"][0]
    assert message["timestamp"].isdigit() and message["id"].startswith("wamid.")


def test_a_status_has_the_documented_shape(sim):
    built = sim.status("wamid.x", "sent", recipient="972987654321").payload
    documented = json.loads(json.dumps(sample("status 'sent'")))
    for contact in value_of(documented)["contacts"]:
        contact.pop("user_id"), contact.pop("parent_user_id")  # BSUIDs: not simulated
    assert keys(built) == keys(documented)


def test_a_failed_status_carries_errors_like_the_documented_one(sim):
    status = value_of(sim.status("wamid.x", "failed", recipient="5678").payload)["statuses"][0]
    documented = value_of(sample("status 'failed'"))["statuses"][0]
    assert set(documented) - {"type"} <= set(status)
    assert {"code", "title"} <= set(status["errors"][0])


def test_edits_and_revokes_have_the_documented_shape(sim):
    original = value_of(sim.incoming_media("16505551234", "image", caption="old", reply_to="M0").payload)
    wamid = original["messages"][0]["id"]
    edit = value_of(sim.edit(wamid, "Updated image caption").payload)["messages"][0]
    documented = value_of(sample("EDITED"))["messages"][0]
    assert set(edit) == set(documented) and set(edit["edit"]) == set(documented["edit"])
    assert set(edit["edit"]["message"]) >= {"context", "type", "image"}
    assert edit["edit"]["message"]["image"]["caption"] == "Updated image caption"
    revoke = value_of(sim.revoke(wamid).payload)["messages"][0]
    assert keys(revoke) == keys(value_of(sample("DELETED"))["messages"][0])


# -- signing --------------------------------------------------------------------------------

def test_deliveries_are_signed_over_metas_escaped_bytes(sim):
    delivery = sim.incoming_text("1", "café / ☕")
    assert b"caf\\u00e9 \\/ \\u2615" in delivery.body
    expected = hmac.new(sim.app_secret.encode(), delivery.body, hashlib.sha256).hexdigest()
    assert delivery.headers["X-Hub-Signature-256"] == "sha256=" + expected
    request = WebhookRequest("POST", "u", {k.lower(): v for k, v in delivery.headers.items()}, {}, delivery.body)
    manifest = providers.bound("whatsapp").manifest
    signatures.verify(manifest.webhook.verify, request, {"credentials": {"appSecret": sim.app_secret}},
                      now=0, max_skew_s=300)
    assert json.loads(delivery.body) == delivery.payload


def test_a_redelivery_is_byte_identical(sim):
    delivery = sim.incoming_text("1", "hi")
    again = sim.retry(delivery)
    assert (again.body, again.headers) == (delivery.body, delivery.headers)


def test_meta_json_escapes_like_meta():
    assert meta_json({"u": "https://x/ü"}) == b'{"u":"https:\\/\\/x\\/\\u00fc"}'


def test_the_handshake_query(sim):
    assert sim.handshake_query(challenge="42") == {
        "hub.mode": "subscribe", "hub.verify_token": sim.verify_token, "hub.challenge": "42"}


# -- the Graph API ----------------------------------------------------------------------------

async def test_the_phone_number_answers_the_requested_fields_with_or_without_a_version(client, sim):
    for prefix in ("/v21.0", ""):
        response = await client.get(f"{prefix}/{sim.phone_number_id}",
                                    params={"fields": "display_phone_number,verified_name"}, headers=AUTH)
        assert response.json() == {"display_phone_number": "+1 555-078-3881", "verified_name": "Sim Shop",
                                   "id": sim.phone_number_id}


async def test_a_token_in_the_query_works_too(client, sim):
    response = await client.get(f"/{sim.phone_number_id}", params={"access_token": TOKEN})
    assert response.status_code == 200


async def test_a_bad_token_answers_code_190(client, sim):
    response = await client.get(f"/{sim.phone_number_id}", headers={"authorization": "Bearer nope"})
    assert response.status_code == 401
    error = response.json()["error"]
    assert (error["code"], error["type"]) == (190, "OAuthException") and error["fbtrace_id"]


async def test_an_unknown_number_or_path_is_a_graph_error(client, sim):
    response = await client.get("/999", headers=AUTH)
    assert (response.status_code, response.json()["error"]["code"], response.json()["error"]["error_subcode"]) == (
        400, 100, 33)
    response = await client.post(f"/{sim.phone_number_id}/nothing", headers=AUTH, json={})
    assert response.json()["error"]["code"] == 100


async def test_the_send_is_checked(client, sim):
    sim.incoming_text("15551234567", "hi")
    url = f"/{sim.phone_number_id}/messages"
    bad = [{}, {"messaging_product": "whatsapp", "to": "15551234567", "type": "text", "text": {}},
           {"messaging_product": "whatsapp", "to": "abc", "type": "text", "text": {"body": "x"}},
           {"messaging_product": "whatsapp", "to": "15551234567", "type": "template", "template": {}}]
    for body in bad:
        response = await client.post(url, headers=AUTH, json=body)
        assert response.status_code == 400 and response.json()["error"]["code"] == 100, body
        assert response.json()["error"]["error_data"]["messaging_product"] == "whatsapp"


async def test_the_window_follows_the_simulator_clock(client, sim, clock):
    url = f"/{sim.phone_number_id}/messages"
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "15551234567",
            "type": "text", "text": {"body": "hi"}}
    sim.incoming_text("15551234567", "hi")
    clock.at += 24 * 3600
    ok = await client.post(url, headers=AUTH, json=body)
    assert ok.json()["messages"][0]["id"] in {m["wamid"] for m in sim.truth()}
    clock.at += 1
    late = await client.post(url, headers=AUTH, json=body)
    assert late.status_code == 400
    error = late.json()["error"]
    assert (error["code"], error["message"]) == (131047, "Re-engagement message")
    assert "24 hours" in error["error_data"]["details"]


async def test_mark_as_read(client, sim):
    wamid = value_of(sim.incoming_text("1", "hi").payload)["messages"][0]["id"]
    response = await client.post(f"/{sim.phone_number_id}/messages", headers=AUTH,
                                 json={"messaging_product": "whatsapp", "status": "read", "message_id": wamid})
    assert response.json() == {"success": True} and sim.truth()[0]["status"] == "read"


@pytest.mark.parametrize("status", [429, 400, 200])
async def test_throttling_comes_in_each_of_metas_forms(client, sim, status):
    sim.throttle_next("phone_number", code=613, status=status, minutes=3)
    response = await client.get(f"/{sim.phone_number_id}", headers=AUTH)
    assert response.status_code == status
    assert response.json()["error"]["code"] == 613
    usage = json.loads(response.headers["x-business-use-case-usage"])
    assert usage["0"][0]["estimated_time_to_regain_access"] == 3
    with pytest.raises(RateLimited) as caught:
        meta.with_usage_wait(classifier(providers.bound("whatsapp").manifest.errors))(response)
    assert caught.value.retry_after == 180.0
    assert (await client.get(f"/{sim.phone_number_id}", headers=AUTH)).status_code == 200


async def test_a_plain_rate_limit_fault_uses_the_platforms_throttling_code(client, sim):
    sim.faults.fail_next("messages", "rate_limit", status=400)
    response = await client.post(f"/{sim.phone_number_id}/messages", headers=AUTH, json={})
    assert response.json()["error"]["code"] == 130429


async def test_a_server_fault_is_transient_in_metas_envelope(client, sim):
    sim.faults.fail_next("phone_number", "server_error", status=500)
    response = await client.get(f"/{sim.phone_number_id}", headers=AUTH)
    assert response.status_code == 500
    assert response.json()["error"]["is_transient"] is True


async def test_the_base_serves_a_subclass_routes():
    class Pages(MetaGraphSimulator):
        throttle_code = 613

        def __init__(self) -> None:
            super().__init__()
            self.route("GET", "{page_id}/conversations", self.conversations, endpoint="conversations")

        async def conversations(self, request, params, body):
            if params["page_id"] != "1":
                raise GraphError(100, "no such page")
            return {"data": [], "paging": {}}

    sim = Pages()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://g") as c:
        assert (await c.get("/v21.0/1/conversations", headers=AUTH)).json() == {"data": [], "paging": {}}
        assert (await c.get("/2/conversations", headers=AUTH)).json()["error"]["code"] == 100
        sim.faults.fail_next("conversations", "rate_limit", status=200)
        assert (await c.get("/1/conversations", headers=AUTH)).json()["error"]["code"] == 613
