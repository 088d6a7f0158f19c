"""The Telegram simulator answers like the Bot API: envelopes, status codes, parameter
encodings, the webhook/getUpdates exclusion and update confirmation by offset."""

from __future__ import annotations

import json

import httpx
import pytest

from syncd.providers.telegram.sim import CONFLICT, DEFAULT_TOKEN, TelegramSimulator


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sim() -> TelegramSimulator:
    sim = TelegramSimulator(clock=Clock())
    sim.seed()
    return sim


@pytest.fixture
async def api(sim):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim),
                                 base_url=f"http://telegram.sim/bot{DEFAULT_TOKEN}") as client:
        yield client


async def test_answers_are_envelopes_with_the_error_code_as_http_status(api):
    me = await api.get("/getMe")
    assert me.status_code == 200 and me.json()["ok"] is True and me.json()["result"]["is_bot"] is True
    missing = await api.post("/sendMessage", json={"chat_id": 1, "text": "x"})
    assert missing.status_code == 400
    assert missing.json() == {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
    unknown = await api.get("/noSuchMethod")
    assert (unknown.status_code, unknown.json()["description"]) == (404, "Not Found")


async def test_an_unknown_token_is_401_unauthorized(sim):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim)) as client:
        answer = await client.get("http://telegram.sim/bot123456:nope/getMe")
    assert answer.status_code == 401
    assert answer.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}


async def test_method_names_are_case_insensitive(api):
    assert (await api.get("/getme")).json()["ok"] is True


async def test_parameters_arrive_as_query_form_json_or_multipart(api, sim):
    group = sim.ids["group"]
    await api.get("/sendMessage", params={"chat_id": group, "text": "query"})
    await api.post("/sendMessage", data={"chat_id": str(group), "text": "form"})
    await api.post("/sendMessage", json={"chat_id": group, "text": "json"})
    await api.post("/sendMessage", files={"chat_id": (None, str(group)), "text": (None, "multipart")})
    await api.post("/sendMessage", data={"chat_id": str(group), "text": "reply",
                                         "reply_parameters": json.dumps({"message_id": 1})})
    texts = [m["text"] for m in sim.truth(group)]
    assert texts == ["query", "form", "json", "multipart", "reply"]
    assert sim.truth(group)[-1]["reply_to_message"]["text"] == "query"


async def test_a_channel_is_addressed_by_its_username_too(api, sim):
    answer = await api.post("/sendMessage", json={"chat_id": "@sim_news", "text": "hi"})
    assert answer.json()["result"]["chat"]["id"] == sim.ids["channel"]


async def test_rate_limits_carry_retry_after_in_the_body_and_no_header(api, sim):
    sim.faults.fail_next("getMe", "rate_limit", retry_after_s=9)
    limited = await api.get("/getMe")
    assert limited.status_code == 429
    assert limited.json() == {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 9",
                              "parameters": {"retry_after": 9}}
    assert "retry-after" not in limited.headers


async def test_get_updates_is_refused_with_409_while_a_webhook_is_set(api, sim):
    set_ = await api.post("/setWebhook", json={"url": "https://example.org/hook", "secret_token": "s3cret"})
    assert set_.json() == {"ok": True, "result": True, "description": "Webhook was set"}
    refused = await api.post("/getUpdates", json={})
    assert (refused.status_code, refused.json()["description"]) == (409, CONFLICT)
    assert sim.conflicts == 1
    info = (await api.get("/getWebhookInfo")).json()["result"]
    assert info["url"] == "https://example.org/hook" and info["pending_update_count"] == 0
    deleted = await api.post("/deleteWebhook")
    assert deleted.json()["description"] == "Webhook was deleted"
    assert (await api.post("/getUpdates")).json() == {"ok": True, "result": []}


async def test_offsets_confirm_updates_and_a_negative_offset_keeps_the_last_ones(api, sim):
    for text in ("a", "b", "c"):
        sim.user_message(sim.ids["group"], sim.ids["bob"], text)
    updates = (await api.post("/getUpdates", json={"timeout": 30})).json()["result"]
    ids = [u["update_id"] for u in updates]
    assert ids == sorted(ids) and len(ids) == 3
    again = (await api.post("/getUpdates", json={"offset": ids[1]})).json()["result"]
    assert [u["message"]["text"] for u in again] == ["b", "c"]
    assert [u["message"]["text"] for u in (await api.post("/getUpdates")).json()["result"]] == ["b", "c"]
    last = (await api.post("/getUpdates", json={"offset": -1})).json()["result"]
    assert [u["message"]["text"] for u in last] == ["c"]


async def test_unconfirmed_updates_expire_after_24_hours(api, sim):
    sim.user_message(sim.ids["group"], sim.ids["bob"], "stale")
    sim.clock.now += 24 * 3600
    assert (await api.post("/getUpdates")).json()["result"] == []


async def test_the_bots_own_messages_are_no_updates(api, sim):
    await api.post("/sendMessage", json={"chat_id": sim.ids["group"], "text": "mine"})
    assert sim.pending() == []


async def test_webhook_deliveries_are_the_update_with_the_registered_secret(api, sim):
    plain = sim.user_message(sim.ids["group"], sim.ids["bob"], "before")
    assert "X-Telegram-Bot-Api-Secret-Token" not in plain.headers
    await api.post("/setWebhook", json={"url": "https://example.org/hook", "secret_token": "s3cret"})
    delivery = sim.user_message(sim.ids["group"], sim.ids["bob"], "after")
    assert delivery.headers == {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": "s3cret"}
    assert json.loads(delivery.body) == delivery.payload
    assert delivery.payload["message"]["text"] == "after"
    assert delivery.update_id == plain.update_id + 1


async def test_set_webhook_refuses_a_secret_outside_telegrams_alphabet(api):
    answer = await api.post("/setWebhook", json={"url": "https://example.org/hook", "secret_token": "no spaces"})
    assert answer.status_code == 400
    assert answer.json()["description"] == "Bad Request: secret token contains unallowed characters"


async def test_strict_webhook_urls_refuse_plain_http_and_odd_ports(sim, api):
    sim.strict_webhook_urls = True
    http = await api.post("/setWebhook", json={"url": "http://example.org/hook"})
    port = await api.post("/setWebhook", json={"url": "https://example.org:9000/hook"})
    assert "HTTPS URL must be provided" in http.json()["description"]
    assert "ports 80, 88, 443 or 8443" in port.json()["description"]


async def test_bots_may_delete_incoming_messages_in_private_chats_only(api, sim):
    sim.user_message(sim.ids["dm_alice"], sim.ids["alice"], "delete me")
    sim.user_message(sim.ids["group"], sim.ids["bob"], "not yours")
    ok = await api.post("/deleteMessage", json={"chat_id": sim.ids["dm_alice"], "message_id": 1})
    refused = await api.post("/deleteMessage", json={"chat_id": sim.ids["group"], "message_id": 1})
    assert ok.json() == {"ok": True, "result": True}
    assert refused.json()["description"] == "Bad Request: message can't be deleted"
    assert sim.truth(sim.ids["dm_alice"]) == []


async def test_supergroup_and_channel_ids_are_minus_100_prefixed(sim):
    assert str(sim.ids["supergroup"]).startswith("-100") and str(sim.ids["channel"]).startswith("-100")
    assert sim.ids["group"] < 0 and sim.ids["dm_alice"] == sim.ids["alice"] > 0


def test_a_deleted_messages_id_is_never_handed_out_again():
    from syncd.providers.telegram.sim import TelegramSimulator

    sim = TelegramSimulator()
    ids = sim.seed()
    chat = next(iter(sim.messages))
    first = sim._new_message(chat, {"from": {"id": 1, "is_bot": False, "first_name": "A"}}, "one", None, {})
    sim.messages[chat].pop(first["message_id"])  # deleted, as deleteMessage does
    second = sim._new_message(chat, {"from": {"id": 1, "is_bot": False, "first_name": "A"}}, "two", None, {})
    assert second["message_id"] == first["message_id"] + 1
    assert ids
