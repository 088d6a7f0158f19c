"""Integrations: create, list, get, delete; credentials are checked and never shown."""

from __future__ import annotations

import asyncio
import json

import pytest
from apisupport import assert_error

from syncd.testbed import GMAIL_PUSH_TOKEN

SLACK_TOKEN = "xoxb-sim-bot-token"


def slack_body(**over):
    body = {"platform": "slack", "customerId": "cust-1",
            "credentials": {"botToken": SLACK_TOKEN, "signingSecret": "sim-signing-secret"}}
    return {**body, **over}


async def test_creating_a_slack_integration_answers_201_with_its_webhook_url(tb, slack_ws):
    response = await tb.api.post("/integrations", json=slack_body(name="Acme Slack"))
    assert response.status_code == 201, response.text
    integration = response.json()["integration"]
    assert integration["platform"] == "slack"
    assert integration["customerId"] == "cust-1"
    assert integration["name"] == "Acme Slack"
    assert integration["status"] == "active"
    assert integration["webhookUrl"] == f"http://syncd.test/webhooks/slack/{integration['id']}"


async def test_creating_a_gmail_integration_answers_201_with_its_webhook_url(tb, gmail_thread):
    integration = await tb.create_gmail()
    assert integration["platform"] == "gmail"
    assert integration["webhookUrl"].endswith(f"/webhooks/gmail/{integration['id']}")


async def test_credentials_never_appear_in_any_answer(tb, slack_ws, gmail_thread):
    slack = await tb.create_slack()
    gmail = await tb.create_gmail()
    gmail_token = next(t for t, a in tb.gmail.tokens.items() if a == tb.gmail.address)
    secrets = [SLACK_TOKEN, tb.slack.signing_secret, gmail_token, GMAIL_PUSH_TOKEN]
    answers = [
        await tb.api.get("/integrations"),
        await tb.api.get(f"/integrations/{slack['id']}"),
        await tb.api.get(f"/integrations/{gmail['id']}"),
        await tb.api.get(f"/integrations/{slack['id']}/status"),
        await tb.api.get(f"/integrations/{gmail['id']}/status"),
        await tb.api.get("/chats", params={"customerId": "cust-1"}),
    ]
    texts = [json.dumps(slack), json.dumps(gmail)] + [a.text for a in answers]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert all(a.status_code == 200 for a in answers)


async def test_integrations_are_listed_with_filters(tb, slack_ws, gmail_thread):
    slack = await tb.create_slack()
    gmail = await tb.create_gmail()
    other = await tb.create_slack(customer="cust-2")

    def ids(response):
        assert response.status_code == 200
        return {i["id"] for i in response.json()["integrations"]}

    assert ids(await tb.api.get("/integrations")) == {slack["id"], gmail["id"], other["id"]}
    assert ids(await tb.api.get("/integrations", params={"customerId": "cust-1"})) == {slack["id"], gmail["id"]}
    assert ids(await tb.api.get("/integrations", params={"platform": "slack"})) == {slack["id"], other["id"]}
    assert ids(await tb.api.get("/integrations", params={"customerId": "cust-1", "platform": "gmail"})) == {gmail["id"]}
    assert ids(await tb.api.get("/integrations", params={"customerId": "nobody"})) == set()


async def test_an_integration_is_read_by_id(tb, slack):
    response = await tb.api.get(f"/integrations/{slack['id']}")
    assert response.status_code == 200
    assert response.json()["integration"]["id"] == slack["id"]
    assert response.json()["integration"]["webhookUrl"] == slack["webhookUrl"]


async def test_an_unknown_integration_answers_404(tb):
    assert_error(await tb.api.get("/integrations/nope"), 404, "not_found")
    assert_error(await tb.api.delete("/integrations/nope"), 404, "not_found")


async def test_a_deleted_integration_is_gone_and_its_webhooks_answer_404(tb, anon, slack):
    response = await tb.api.delete(f"/integrations/{slack['id']}")
    assert response.status_code == 200
    assert_error(await tb.api.get(f"/integrations/{slack['id']}"), 404, "not_found")
    assert slack["id"] not in {i["id"] for i in (await tb.api.get("/integrations")).json()["integrations"]}
    delivery = tb.slack.post_user_message(tb.slack.ids["general"], "after the delete", tb.slack.ids["bob"])
    assert_error(await anon.post(tb.webhook_url(slack), content=delivery.body, headers=delivery.headers), 404)
    assert_error(await tb.api.delete(f"/integrations/{slack['id']}"), 404)


async def test_an_unknown_platform_is_refused_with_422(tb):
    response = await tb.api.post("/integrations", json=slack_body(platform="myspace"))
    error = assert_error(response, 422, "unknown_platform")
    assert "myspace" in error["message"]


@pytest.mark.parametrize(("platform", "credentials", "field"), [
    ("slack", {"botToken": SLACK_TOKEN}, "signingSecret"),
    ("slack", {"signingSecret": "x"}, "botToken"),
    ("gmail", {"accessToken": "tok", "emailAddress": "not-an-email"}, "emailAddress"),
    ("gmail", {"emailAddress": "user@example.com"}, "accessToken"),
])
async def test_invalid_credentials_are_refused_with_422_naming_the_field(tb, platform, credentials, field):
    response = await tb.api.post("/integrations", json={"platform": platform, "customerId": "cust-1",
                                                         "credentials": credentials})
    error = assert_error(response, 422, "invalid_credentials")
    assert field in [d["field"] for d in error["details"]]
    assert (await tb.api.get("/integrations")).json()["integrations"] == []


async def test_credentials_the_platform_rejects_are_refused_with_422_and_nothing_is_stored(tb, slack_ws):
    body = slack_body(credentials={"botToken": "xoxb-not-valid", "signingSecret": "s"})
    error = assert_error(await tb.api.post("/integrations", json=body), 422, "credentials_rejected")
    assert "xoxb-not-valid" not in error["message"]
    gmail = {"platform": "gmail", "customerId": "cust-1",
             "credentials": {"accessToken": "expired-or-wrong", "emailAddress": tb.gmail.address}}
    assert_error(await tb.api.post("/integrations", json=gmail), 422, "credentials_rejected")
    assert (await tb.api.get("/integrations")).json()["integrations"] == []
    assert (await tb.api.get("/chats", params={"customerId": "cust-1"})).json()["chats"] == []


async def test_settings_import_chats_restricts_the_initial_import_to_those_chats(tb, slack_ws):
    general = slack_ws["general"]
    slack = await tb.create_slack(settings={"importChats": [general]})
    chats = await tb.chats(slack)
    assert [c for c in chats.values() if c["imported"]] == [chats[general]]
    assert len(await tb.messages(chats[general]["id"])) == 6


async def test_settings_import_chats_must_be_a_list_of_ids(tb, slack_ws):
    response = await tb.api.post("/integrations", json=slack_body(settings={"importChats": "C123"}))
    assert_error(response, 422, "invalid_settings")


async def test_a_body_that_is_not_json_answers_400(tb):
    response = await tb.api.post("/integrations", content=b'{"platform": "slack",',
                                 headers={"content-type": "application/json"})
    assert_error(response, 400, "bad_request")


async def test_an_empty_body_answers_400(tb):
    response = await tb.api.post("/integrations", content=b"", headers={"content-type": "application/json"})
    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize(("body", "field"), [
    (slack_body(customerId=5), "customerId"),
    (slack_body(credentials="xoxb"), "credentials"),
    (slack_body(settings=[1]), "settings"),
    ({"customerId": "cust-1", "credentials": {}}, "platform"),
])
async def test_wrong_types_or_missing_fields_answer_422_naming_the_field(tb, body, field):
    error = assert_error(await tb.api.post("/integrations", json=body), 422, "invalid")
    assert field in [d["field"] for d in error["details"]]


async def test_unknown_fields_answer_422(tb):
    error = assert_error(await tb.api.post("/integrations", json=slack_body(webhookSecret="x")), 422, "invalid")
    assert "webhookSecret" in [d["field"] for d in error["details"]]


async def test_a_json_array_body_answers_422(tb):
    error = assert_error(await tb.api.post("/integrations", json=[slack_body()]), 422, "invalid")
    assert error["details"][0]["field"] == "body"


async def test_a_deleted_integration_has_no_status_chats_resync_or_credentials(tb, slack):
    await tb.api.delete(f"/integrations/{slack['id']}")
    base = f"/integrations/{slack['id']}"
    assert_error(await tb.api.get(f"{base}/status"), 404, "not_found")
    assert_error(await tb.api.get(f"{base}/chats/available"), 404, "not_found")
    assert_error(await tb.api.post(f"{base}/chats/import", json={"externalChatIds": ["C1"]}), 404, "not_found")
    assert_error(await tb.api.post(f"{base}/resync", json={}), 404, "not_found")
    credentials = {"credentials": {"botToken": SLACK_TOKEN, "signingSecret": "sim-signing-secret"}}
    assert_error(await tb.api.put(f"{base}/credentials", json=credentials), 404, "not_found")


async def test_a_webhook_addressed_to_another_platform_answers_404(tb, anon, slack):
    response = await anon.post(f"/webhooks/gmail/{slack['id']}?token=x", content=b"{}")
    assert_error(response, 404, "not_found")


async def test_new_credentials_are_stored_and_never_shown(tb, slack):
    credentials = {"botToken": SLACK_TOKEN, "signingSecret": "a-brand-new-signing-secret"}
    response = await tb.api.put(f"/integrations/{slack['id']}/credentials", json={"credentials": credentials})
    assert response.status_code == 200, response.text
    assert response.json()["integration"]["status"] == "active"
    assert "a-brand-new-signing-secret" not in response.text and SLACK_TOKEN not in response.text
    # The new signing secret is the one webhooks are checked with from now on.
    old = tb.slack.url_verification("old-secret")
    assert_error(await tb.deliver_slack(slack, old), 401)
    tb.slack.signing_secret = "a-brand-new-signing-secret"
    new = tb.slack.url_verification("new-secret")
    assert (await tb.deliver_slack(slack, new)).json() == {"challenge": "new-secret"}


async def test_new_credentials_missing_a_field_answer_422_naming_it(tb, slack):
    response = await tb.api.put(f"/integrations/{slack['id']}/credentials",
                                json={"credentials": {"botToken": SLACK_TOKEN}})
    error = assert_error(response, 422, "invalid_credentials")
    assert [d["field"] for d in error["details"]] == ["signingSecret"]


async def test_new_credentials_the_platform_rejects_answer_422_and_keep_the_old_ones(tb, slack):
    credentials = {"botToken": "xoxb-revoked-long-ago", "signingSecret": "sim-signing-secret"}
    response = await tb.api.put(f"/integrations/{slack['id']}/credentials", json={"credentials": credentials})
    assert_error(response, 422, "credentials_rejected")
    chats = (await tb.api.get(f"/integrations/{slack['id']}/chats/available"))
    assert chats.status_code == 200


async def wait_for_status(tb, integration_id: str, status: str, timeout_s: float = 10) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        integration = (await tb.api.get(f"/integrations/{integration_id}")).json()["integration"]
        if integration["status"] == status or loop.time() > deadline:
            return integration
        await asyncio.sleep(0.01)


async def test_a_revoked_token_puts_the_integration_in_error_until_new_credentials_arrive(tb, slack_ws, slack):
    general = slack_ws["general"]
    tb.slack.revoked_tokens.add(SLACK_TOKEN)
    event = {"id": "evt-1", "type": "message.created", "customerId": "cust-1", "platform": "slack",
             "externalChatId": general, "message": {"id": "app-msg-1", "text": "held back"}}
    assert (await tb.post_event(event)).status_code == 202
    integration = await wait_for_status(tb, slack["id"], "error")
    assert integration["status"] == "error"
    assert "token_revoked" in integration["statusReason"]
    assert SLACK_TOKEN not in integration["statusReason"]
    assert_error(await tb.api.post(f"/integrations/{slack['id']}/resync", json={}), 409, "integration_not_active")
    tb.slack.valid_tokens.add("xoxb-reinstalled")
    credentials = {"botToken": "xoxb-reinstalled", "signingSecret": tb.slack.signing_secret}
    response = await tb.api.put(f"/integrations/{slack['id']}/credentials", json={"credentials": credentials})
    assert response.json()["integration"]["status"] == "active"
    await tb.settle()
    assert [m["text"] for m in tb.slack.truth(general) if m["bot_id"]] == ["held back"]


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
async def test_a_body_not_sent_as_json_answers_400_saying_how_to_send_it(tb, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = await tb.api.post("/integrations", content=json.dumps(slack_body()).encode(), headers=headers)
    error = assert_error(response, 400, "bad_request")
    assert "application/json" in error["message"]


async def test_an_unknown_platform_in_the_list_filter_is_an_error_not_an_empty_list(tb):
    answer = await tb.api.get("/integrations", params={"platform": "slak"})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "unknown_platform" and "slack" in answer.json()["error"]["message"]
