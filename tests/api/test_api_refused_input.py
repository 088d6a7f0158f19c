"""Input that must be refused with 422 naming the field, never stored: NUL bytes and overlong ids,
settings keys MongoDB would read as operators or paths, non-booleans for booleans, and unknown
credential fields."""

from __future__ import annotations

import pytest
from apisupport import assert_error


def _fields(response) -> list[str]:
    return [d["field"] for d in response.json()["error"].get("details") or []]


@pytest.fixture
async def slack(tb):
    tb.slack.seed_workspace()
    return await tb.create_slack()


def _slack_credentials(tb) -> dict[str, str]:
    return {"botToken": next(iter(tb.slack.valid_tokens)), "signingSecret": tb.slack.signing_secret}


async def test_a_nul_byte_or_an_overlong_id_is_refused_naming_the_field(tb, slack):
    for bad in ("C1\x00x", "C" * 500_000):
        response = await tb.api.post(f"/integrations/{slack['id']}/chats/import", json={"externalChatIds": [bad]})
        assert_error(response, 422, "invalid")
        assert _fields(response) == ["externalChatIds.0"]
    response = await tb.api.put("/user-platforms", json={"customerId": "c\x00", "platform": "slack",
                                                         "externalUserId": "U1"})
    assert_error(response, 422, "invalid")
    assert _fields(response) == ["customerId"]
    event = {"id": "e" * 600, "type": "message.created", "customerId": "cust-1", "platform": "slack",
             "externalChatId": "C\x001", "message": {"id": "m1", "text": "hi"}}
    response = await tb.post_event(event)
    assert_error(response, 422, "invalid")
    assert sorted(_fields(response)) == ["externalChatId", "id"]


@pytest.mark.parametrize("settings", [{"$where": "1"}, {"a.b": 1}, {"nested": {"$set": {"x": 1}}}, {"l": [{"x.y": 1}]}])
async def test_settings_keys_that_mongodb_would_interpret_are_refused(tb, settings):
    response = await tb.api.post("/integrations", json={"platform": "slack", "customerId": "cust-1",
                                                        "credentials": _slack_credentials(tb), "settings": settings})
    error = assert_error(response, 422, "invalid")
    assert _fields(response) == ["settings"]
    assert "may not start with '$'" in error["details"][0]["problem"]
    assert (await tb.api.get("/integrations")).json()["integrations"] == []


@pytest.mark.parametrize("value", ["yes", 1, "true", None])
async def test_a_boolean_field_takes_only_a_boolean(tb, slack, value):
    response = await tb.api.post(f"/integrations/{slack['id']}/resync", json={"full": value})
    assert_error(response, 422, "invalid")
    assert _fields(response) == ["full"]
    response = await tb.api.put("/user-platforms", json={"customerId": "c", "platform": "slack",
                                                         "externalUserId": "U1", "isSelf": value})
    assert _fields(response) == ["isSelf"]


async def test_an_unknown_credential_field_is_refused_naming_it(tb, slack):
    credentials = {**_slack_credentials(tb), "bottoken": "xoxb-typo"}
    response = await tb.api.post("/integrations", json={"platform": "slack", "customerId": "cust-2",
                                                        "credentials": credentials})
    error = assert_error(response, 422, "invalid_credentials")
    assert _fields(response) == ["bottoken"]
    assert "xoxb-typo" not in response.text and error["details"][0]["problem"]
    response = await tb.api.put(f"/integrations/{slack['id']}/credentials", json={"credentials": credentials})
    assert_error(response, 422, "invalid_credentials")
    assert _fields(response) == ["bottoken"]
