"""get.chat through the HTTP API: the integration and its plugin URL, the plugin contract as
get.chat calls it (features, initialize, contacts with search and paging, configure_api), the
history import through the Integration API, propagated WABA webhooks, app messages sent and
their statuses, a wrong plugin secret, and a refused token."""

from __future__ import annotations

from typing import Any

import pytest
from apisupport import assert_error, chat_messages, drain_inbox, find_message

from syncd.providers.getchat.sim import GetchatSimulator
from syncd.testbed import BASE, Testbed

ANN, BO = "4915112345678", "4915187654321"


@pytest.fixture
async def sim() -> GetchatSimulator:
    sim = GetchatSimulator()
    sim.seed(ANN, "Ann Ames", [(f"ann {i}", i % 2 == 1) for i in range(7)])
    sim.seed(BO, "Bo Berg", [("bo 0", False)])
    return sim


@pytest.fixture
async def tb(sim: GetchatSimulator):
    tb = await Testbed.start(sims={"getchat": sim})
    yield tb
    await tb.stop()


async def create(tb: Testbed) -> dict[str, Any]:
    response = await tb.api.post("/integrations", json={"platform": "getchat", "customerId": "cust-1"})
    assert response.status_code == 201, response.text
    return response.json()["integration"]


def plugin(integration: dict[str, Any]) -> str:
    return integration["pluginUrl"].replace(BASE, "")


async def connected(tb: Testbed, sim: GetchatSimulator) -> dict[str, Any]:
    """Created, then configured the way get.chat does it, and imported."""
    integration = await create(tb)
    answer = await tb.api.post(plugin(integration) + "/configure_api", json=sim.configure_body())
    assert answer.status_code == 200, answer.text
    await tb.wait_imported(integration["id"])
    return integration


async def test_the_integration_takes_no_credentials_and_answers_an_unguessable_plugin_url(tb):
    integration = await create(tb)
    prefix = f"{BASE}/plugins/getchat/{integration['id']}/"
    assert integration["pluginUrl"].startswith(prefix)
    secret = integration["pluginUrl"][len(prefix):]
    assert len(secret) >= 32 and "/" not in secret
    # Answered once, on creation, like every secret: never in later answers.
    for path in (f"/integrations/{integration['id']}", "/integrations"):
        assert secret not in (await tb.api.get(path)).text


async def test_the_plugin_answers_name_type_and_features_in_getchats_spelling(tb):
    root = plugin(await create(tb))
    index = await tb.api.get(root + "/")
    assert index.status_code == 200 and set(index.json()) == {"name", "type"}
    assert all(isinstance(v, str) and v for v in index.json().values())
    features = (await tb.api.get(root + "/features")).json()
    assert features == {"is_contact_provider": True, "is_message_reciever": True, "is_message_sender": True}


async def test_initialize_asks_for_authorization_until_the_api_is_configured(tb, sim):
    integration = await create(tb)
    before = (await tb.api.get(plugin(integration) + "/initialize")).json()
    assert before["status"] == "authorization_needed"
    await tb.api.post(plugin(integration) + "/configure_api", json=sim.configure_body())
    await tb.wait_imported(integration["id"])
    assert (await tb.api.get(plugin(integration) + "/initialize")).json() == {"status": "initialized"}
    stored = await tb.daemon.store.get_credentials(integration["id"])
    assert stored["apiToken"] == sim.token and stored["apiUrl"] == "https://demo-stack.inbox.platform.get.chat/api/v1"
    raw = await tb.daemon.store.integrations.find_one({"_id": integration["id"]})
    assert sim.token not in str(raw)  # encrypted at rest, like every credential


async def test_configure_api_imports_chats_and_messages_through_the_integration_api(tb, sim):
    integration = await connected(tb, sim)
    ann = await chat_messages(tb, integration, ANN)
    assert sorted(m["text"] for m in ann) == sorted(f"ann {i}" for i in range(7))
    assert {m["direction"] for m in ann if m["text"] in ("ann 1", "ann 3")} == {"outbound"}
    assert {m["direction"] for m in ann if m["text"] in ("ann 0", "ann 2")} == {"inbound"}
    chats = await tb.chats(integration)
    assert chats[ANN]["name"] == "Ann Ames" and chats[BO]["kind"] == "dm"


async def test_history_is_paged_by_before_time(tb, sim, monkeypatch):
    from syncd.kit.declarative import ManifestConnector
    monkeypatch.setattr(ManifestConnector, "page_limit", 3)
    integration = await connected(tb, sim)
    assert len(await chat_messages(tb, integration, ANN)) == 7


async def test_a_wrong_plugin_secret_is_404_and_stores_nothing(tb, sim):
    integration = await create(tb)
    wrong = f"/plugins/getchat/{integration['id']}/{'x' * 43}"
    for method, path in (("GET", "/"), ("GET", "/features"), ("GET", "/contacts/"),
                         ("POST", "/configure_api"), ("POST", "/webhook")):
        response = await tb.api.request(method, wrong + path, json=sim.configure_body())
        assert_error(response, 404, "not_found")
    assert_error(await tb.api.get(f"/plugins/getchat/nope/{'x' * 43}/"), 404, "not_found")
    assert "apiToken" not in await tb.daemon.store.get_credentials(integration["id"])
    assert not any((await tb.daemon.store.inbox_counts()).values())


async def test_contacts_come_from_the_customers_other_platforms_with_every_mandatory_field(tb, sim):
    integration = await create(tb)
    for i, name in enumerate(["Ann Slack", "Bo Slack", "Cy Mail"]):
        await tb.api.put("/user-platforms", json={"customerId": "cust-1", "platform": "slack",
                                                  "externalUserId": f"U{i}", "displayName": name,
                                                  "externalEmail": f"p{i}@example.com"})
    await tb.api.put("/user-platforms", json={"customerId": "cust-1", "platform": "slack",
                                              "externalUserId": "UME", "isSelf": True})
    await tb.api.put("/user-platforms", json={"customerId": "cust-2", "platform": "slack",
                                              "externalUserId": "UX", "displayName": "Other customer"})
    root = plugin(integration)
    page = (await tb.api.get(root + "/contacts/", params={"limit": 2})).json()
    assert set(page) == {"results", "count", "next_page_param", "contact_provider"}
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next_page_param"] == "2"
    for contact in page["results"]:
        assert set(contact) >= {"contact_id", "name", "avatar", "large_avatar", "companies", "phone_numbers",
                                "email_addresses", "urls"}
    rest = (await tb.api.get(root + "/contacts/", params={"limit": 2, "offset": page["next_page_param"]})).json()
    assert [c["name"] for c in rest["results"]] == ["Cy Mail"] and rest["next_page_param"] == ""
    found = (await tb.api.get(root + "/contacts/", params={"search": "bo"})).json()
    assert [c["name"] for c in found["results"]] == ["Bo Slack"]
    assert found["results"][0]["email_addresses"] == [{"email_address": "p1@example.com", "description": "slack"}]
    one = (await tb.api.get(root + "/contacts/" + found["results"][0]["contact_id"])).json()
    assert one["count"] == 1 and one["results"][0]["name"] == "Bo Slack"
    none = (await tb.api.get(root + "/contacts/4900000000")).json()
    assert none["results"] == [] and none["count"] == 0
    assert_error(await tb.api.get(root + "/contacts/", params={"limit": "lots"}), 400, "bad_request")


async def test_configure_api_refuses_what_get_chat_sends_when_the_api_is_not_allowed(tb):
    root = plugin(await create(tb))
    assert_error(await tb.api.post(root + "/configure_api", json={"api_url": "None", "api_token": "None"}), 422)
    assert_error(await tb.api.post(root + "/configure_api", content=b"{"), 400, "bad_request")
    assert_error(await tb.api.post(root + "/configure_api", json={"api_url": "ftp://x", "api_token": "t"}), 422)


async def test_a_refused_token_is_rejected_and_a_later_401_puts_the_integration_in_error(tb, sim):
    integration = await create(tb)
    refused = await tb.api.post(plugin(integration) + "/configure_api",
                                json={**sim.configure_body(), "api_token": "wrong"})
    assert refused.status_code == 200  # accepted: get.chat calls once; the import reports the refusal
    await tb.settle()
    got = (await tb.api.get(f"/integrations/{integration['id']}")).json()["integration"]
    assert got["status"] == "error"
    assert (await tb.api.get(plugin(integration) + "/initialize")).json()["status"] == "init_failed"
    await tb.api.post(plugin(integration) + "/configure_api", json=sim.configure_body())
    await tb.wait_imported(integration["id"])
    assert (await tb.api.get(f"/integrations/{integration['id']}")).json()["integration"]["status"] == "active"


async def test_propagated_webhooks_are_stored_once_and_app_messages_follow_their_statuses(tb, sim):
    integration = await connected(tb, sim)
    delivery = sim.incoming("4917000000001", "new here", name="Cy Chen")
    for _ in range(2):
        answer = await tb.api.post(plugin(integration) + "/webhook", content=delivery.body, headers=delivery.headers)
        assert answer.status_code == 200
    await drain_inbox(tb)
    stored = await chat_messages(tb, integration, "4917000000001")
    assert [m["text"] for m in stored] == ["new here"]
    # The shared webhook path needs the plugin secret too: get.chat signs nothing.
    unsigned = await tb.api.post(tb.webhook_url(integration), content=delivery.body, headers=delivery.headers)
    assert_error(unsigned, 401)
    response = await tb.post_event({"id": "evt-gc-1", "type": "message.created", "customerId": "cust-1",
                                    "platform": "getchat", "externalChatId": ANN,
                                    "message": {"id": "app-gc-1", "text": "on its way"}})
    assert response.status_code == 202
    await tb.settle()
    assert sim.sent_bodies[-1] == {"wa_id": ANN, "type": "text", "text": {"body": "on its way"}}
    sent_id = sim.messages[-1].id
    for state in ("sent", "delivered", "read"):
        status = sim.status(sent_id, state)
        await tb.api.post(plugin(integration) + "/webhook", content=status.body, headers=status.headers)
    await drain_inbox(tb)
    message = await find_message(tb, integration, ANN, sent_id)
    assert message["appMessageId"] == "app-gc-1" and message["deliveryState"] == "read"


async def test_the_legacy_webhook_format_is_acknowledged_and_dropped(tb, sim):
    integration = await connected(tb, sim)
    answer = await tb.api.post(plugin(integration) + "/webhook",
                               json={"type": "incoming_messages", "waba_payload": {"incoming_messages": []}})
    assert answer.status_code == 200
    assert not any((await tb.daemon.store.inbox_counts()).values())
