"""The Messenger/Instagram simulators answer with Meta's shapes: compared with the documented
samples (``tests/fixtures/messenger.json``, ``instagram.json``) and with Graph's paging and
error rules, so the connector is tested against something that behaves like Meta."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.providers.instagram.sim import InstagramSimulator
from syncd.providers.messenger.sim import MessengerSimulator
from syncd.providers.meta.sim_pages import parse_fields

ROOT = Path(__file__).resolve().parents[2]
MESSENGER = json.loads((ROOT / "tests/fixtures/messenger.json").read_text())
INSTAGRAM = json.loads((ROOT / "tests/fixtures/instagram.json").read_text())
TOKEN = "EAAG-sim-access-token"


def sample(fixtures: dict[str, Any], contains: str) -> dict[str, Any]:
    return next(s for s in fixtures["samples"] if contains in s["description"])["payload"]


def item_of(delivery) -> dict[str, Any]:
    return delivery.payload["entry"][0]["messaging"][0]


def shape(value: Any) -> Any:
    """The key structure of a payload, values dropped."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


@pytest.fixture
def sim() -> MessengerSimulator:
    sim = MessengerSimulator()
    sim.add_person("5678", "Ann Ames")
    return sim


@pytest.fixture
async def api(sim):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://meta.sim/v21.0",
                                 headers={"authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def test_a_user_message_has_the_documented_item_shape(sim):
    documented = sample(MESSENGER, "messages event (gateway test fixture)")
    delivery = sim.user_message("5678", "Hello World")
    assert delivery.payload["object"] == "page"
    assert set(delivery.payload["entry"][0]) == set(documented["entry"][0])
    assert shape(item_of(delivery)) == shape(documented["entry"][0]["messaging"][0])


def test_receipts_have_the_documented_shapes(sim):
    delivered = item_of(sim.delivery("5678", ["m_1"]))
    assert shape(delivered) == shape(sample(MESSENGER, "message_deliveries"))
    read = item_of(sim.read("5678"))
    assert shape(read) == shape(sample(MESSENGER, "message_reads"))


def test_an_instagram_unsend_and_echo_have_the_documented_shapes():
    ig = InstagramSimulator()
    message = ig.add_message("5678", "soon gone")
    unsent = item_of(ig.unsend(message.mid))
    assert shape(unsent) == shape(sample(INSTAGRAM, "Instagram unsend")["entry"][0]["messaging"][0])
    echo = item_of(ig.page_message("5678", "from the app"))
    documented = sample(INSTAGRAM, "Instagram echo")["entry"][0]["messaging"][0]
    assert set(echo) == set(documented) and echo["message"]["is_echo"] is True
    assert echo["sender"]["id"] == ig.account_id  # Meta's echoes come from the account


def test_deliveries_are_signed_over_metas_escaped_bytes(sim):
    delivery = sim.user_message("5678", "Olá / café")
    assert b"Ol\\u00e1 \\/ caf\\u00e9" in delivery.body
    expected = "sha256=" + hmac.new(sim.app_secret.encode(), delivery.body, hashlib.sha256).hexdigest()
    assert delivery.headers["X-Hub-Signature-256"] == expected


async def test_the_send_answer_has_the_documented_keys(sim, api):
    sim.user_message("5678", "hi")
    answer = await api.post(f"/{sim.account_id}/messages", json={
        "recipient": {"id": "5678"}, "messaging_type": "RESPONSE", "message": {"text": "hello"}})
    assert set(answer.json()) == set(sample(MESSENGER, "Send API"))
    me = await api.post("/me/messages", json={"recipient": {"id": "5678"}, "messaging_type": "RESPONSE",
                                              "message": {"text": "via /me"}})
    assert me.status_code == 200 and len(sim.echoes) == 2


@pytest.mark.parametrize(("body", "code", "subcode"), [
    ({"recipient": {"id": "5678"}, "message": {"text": "x"}}, 100, None),
    ({"recipient": {"id": "404"}, "messaging_type": "RESPONSE", "message": {"text": "x"}}, 100, 2018001),
    ({"recipient": {"id": "5678"}, "messaging_type": "RESPONSE", "message": {"text": ""}}, 100, None),
    ({"recipient": {"id": "5678"}, "messaging_type": "MESSAGE_TAG", "message": {"text": "x"}}, 100, None),
    ({"recipient": {"id": "5678"}, "messaging_type": "RESPONSE", "message": {"text": "x"}}, 10, 2018278),
])
async def test_send_errors_use_metas_envelope(sim, api, body, code, subcode):
    answer = await api.post(f"/{sim.account_id}/messages", json=body)
    error = answer.json()["error"]
    assert answer.status_code == 400 and error["code"] == code and error.get("error_subcode") == subcode
    assert error["type"] == "OAuthException" and error["fbtrace_id"]


async def test_conversations_page_with_cursors_and_an_absolute_next(sim, api):
    for n in range(5):
        sim.user_message(f"90{n}", f"hi {n}", name=f"P{n}")
    first = (await api.get(f"/{sim.account_id}/conversations",
                           params={"platform": "messenger", "fields": "participants,updated_time", "limit": 2})).json()
    assert len(first["data"]) == 2 and set(first["paging"]["cursors"]) == {"before", "after"}
    assert first["paging"]["next"].startswith(f"http://meta.sim/v21.0/{sim.account_id}/conversations?")
    assert "access_token" not in first["paging"]["next"]
    record = first["data"][0]
    assert set(record) == {"id", "participants", "updated_time"} and record["updated_time"].endswith("+0000")
    assert record["participants"]["data"][0] == {"name": "P4", "email": "904@facebook.com", "id": "904"}
    seen, url = [c["id"] for c in first["data"]], first["paging"]["next"]
    while url:
        page = (await api.get(url)).json()
        seen += [c["id"] for c in page["data"]]
        url = page["paging"].get("next")
    assert len(seen) == len(set(seen)) == 5  # Ann has no messages, so no conversation yet


async def test_messages_beyond_the_20_newest_have_no_details_and_refuse_a_lookup(sim, api):
    for n in range(22):
        sim.add_message("5678", f"n{n}")
    conversation = sim.conversations["5678"]
    listed = (await api.get(f"/{conversation}/messages", params={"fields": "id,created_time,from,message"})).json()
    assert [("from" in m) for m in listed["data"]] == [True] * 20 + [False] * 2
    assert (await api.get(f"/{listed['data'][0]['id']}", params={"fields": "message"})).json()["message"] == "n21"
    refused = await api.get(f"/{listed['data'][21]['id']}", params={"fields": "message"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == 100
    nested = (await api.get(f"/{conversation}", params={"fields": "messages{id,message}"})).json()
    assert nested["messages"]["data"][0] == {"id": listed["data"][0]["id"], "message": "n21"}


async def test_a_wrong_token_answers_code_190(sim):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://meta.sim") as client:
        answer = await client.get(f"/{sim.account_id}", headers={"authorization": "Bearer EAAG-nope"})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == 190


async def test_the_oauth_token_endpoint_refuses_a_wrong_client_secret(sim, api):
    answer = await api.post("/oauth/access_token", content=f"client_id={sim.app_id}&client_secret=nope&code=x",
                            headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == 1


def test_graph_field_lists_with_nested_edges_are_parsed():
    assert parse_fields("participants,messages.limit(20){id,from},updated_time") == {
        "participants": None, "messages": "id,from", "updated_time": None}
