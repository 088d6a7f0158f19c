"""Chats and their messages: real names and kinds, importing more chats, paging, deleting."""

from __future__ import annotations

import pytest
from apisupport import assert_error


async def test_listing_chats_needs_a_customer_or_an_integration(tb):
    error = assert_error(await tb.api.get("/chats"), 400, "bad_request")
    assert "customerId" in error["message"]


async def test_slack_chats_carry_their_real_names_and_kinds(tb, slack_ws, slack):
    chats = await tb.chats(slack)
    seen = {external: (c["name"], c["kind"]) for external, c in chats.items()}
    assert seen == {
        slack_ws["general"]: ("general", "channel"),
        slack_ws["secret"]: ("secret-plans", "channel"),
        slack_ws["dm_alice"]: ("Alice Archer", "dm"),
        slack_ws["group"]: ("mpdm-syncbot--bob--carol-1", "group"),
    }
    assert all(c["imported"] and c["integrationId"] == slack["id"] for c in chats.values())


async def test_chats_are_listed_by_customer_across_integrations(tb, slack_ws, gmail_thread):
    slack = await tb.create_slack()
    gmail = await tb.create_gmail()
    chats = (await tb.api.get("/chats", params={"customerId": "cust-1"})).json()["chats"]
    assert {c["integrationId"] for c in chats} == {slack["id"], gmail["id"]}
    assert (await tb.api.get("/chats", params={"customerId": "cust-2"})).json()["chats"] == []


async def test_gmail_threads_are_chats_named_by_their_subject(tb, gmail_thread, gmail):
    chats = await tb.chats(gmail)
    assert list(chats) == [gmail_thread]
    thread = chats[gmail_thread]
    assert (thread["name"], thread["kind"]) == ("Order #1001", "email_thread")
    assert sorted(thread["participants"]) == ["email@domain.com", tb.gmail.address]


async def test_available_chats_are_the_platforms_chats_with_their_real_names(tb, slack_ws, slack):
    response = await tb.api.get(f"/integrations/{slack['id']}/chats/available")
    assert response.status_code == 200
    available = {c["externalChatId"]: (c["name"], c["kind"]) for c in response.json()["chats"]}
    assert available[slack_ws["general"]] == ("general", "channel")
    assert available[slack_ws["dm_alice"]] == ("Alice Archer", "dm")
    assert len(available) == 4


async def test_available_chats_of_an_unknown_integration_answer_404(tb):
    assert_error(await tb.api.get("/integrations/nope/chats/available"), 404)


async def test_importing_a_chat_left_out_by_import_chats_imports_it(tb, slack_ws):
    slack = await tb.create_slack(settings={"importChats": [slack_ws["general"]]})
    assert slack_ws["dm_alice"] not in await tb.chats(slack)
    response = await tb.api.post(f"/integrations/{slack['id']}/chats/import",
                                 json={"externalChatIds": [slack_ws["dm_alice"]]})
    assert response.status_code == 202, response.text
    assert [c["externalChatId"] for c in response.json()["chats"]] == [slack_ws["dm_alice"]]
    await tb.wait_imported(slack["id"])
    dm = (await tb.chats(slack))[slack_ws["dm_alice"]]
    assert (dm["name"], dm["kind"], dm["imported"]) == ("Alice Archer", "dm", True)
    assert [m["text"] for m in await tb.messages(dm["id"])] == ["Hi bot, can you sync?"]


async def test_importing_a_chat_the_platform_does_not_have_answers_404(tb, slack):
    response = await tb.api.post(f"/integrations/{slack['id']}/chats/import", json={"externalChatIds": ["C0NOPE"]})
    error = assert_error(response, 404)
    assert "C0NOPE" in error["message"]


@pytest.mark.parametrize("body", [{}, {"externalChatIds": []}, {"externalChatIds": "C1"}])
async def test_importing_chats_needs_a_list_of_chat_ids(tb, slack, body):
    assert_error(await tb.api.post(f"/integrations/{slack['id']}/chats/import", json=body), 422, "invalid")


async def test_messages_are_paged_newest_first_with_a_next_cursor(tb, slack_ws, slack):
    chat = (await tb.chats(slack))[slack_ws["general"]]
    pages, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await tb.api.get(f"/chats/{chat['id']}/messages", params=params)
        assert response.status_code == 200
        page = response.json()
        assert len(page["messages"]) <= 2
        pages.append(page["messages"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    messages = [m for page in pages for m in page]
    assert len(pages) == 3
    assert len(messages) == len({m["id"] for m in messages}) == 6
    sent = [m["sentAt"] for m in messages]
    assert sent == sorted(sent, reverse=True)
    assert messages[0]["text"] == "QA Thursday"
    assert messages[-1]["text"] == "Good morning"


async def test_one_page_holds_up_to_500_messages(tb, slack_ws, slack):
    chat = (await tb.chats(slack))[slack_ws["general"]]
    response = await tb.api.get(f"/chats/{chat['id']}/messages", params={"limit": 500})
    assert response.status_code == 200
    assert len(response.json()["messages"]) == 6
    assert response.json()["nextCursor"] is None


@pytest.mark.parametrize("limit", ["0", "501", "-1", "ten"])
async def test_a_page_limit_out_of_bounds_answers_422(tb, slack_ws, slack, limit):
    chat = (await tb.chats(slack))[slack_ws["general"]]
    error = assert_error(await tb.api.get(f"/chats/{chat['id']}/messages", params={"limit": limit}), 422)
    assert "limit" in error["details"][0]["field"]


@pytest.mark.parametrize("cursor", ["garbage", "W10", "eyJhIjogMX0", "WzUsIDZd", "!!!"])
async def test_a_cursor_we_did_not_hand_out_answers_400(tb, slack_ws, slack, cursor):
    chat = (await tb.chats(slack))[slack_ws["general"]]
    response = await tb.api.get(f"/chats/{chat['id']}/messages", params={"cursor": cursor})
    assert_error(response, 400, "bad_request")


async def test_messages_of_an_unknown_chat_answer_404(tb):
    assert_error(await tb.api.get("/chats/nope/messages"), 404, "not_found")


async def test_deleting_a_chat_removes_it_and_its_messages(tb, slack_ws, slack):
    chat = (await tb.chats(slack))[slack_ws["general"]]
    response = await tb.api.delete(f"/chats/{chat['id']}")
    assert response.status_code == 200
    assert response.json()["deleted"] == {"chatId": chat["id"], "messages": 6}
    assert slack_ws["general"] not in await tb.chats(slack)
    assert_error(await tb.api.get(f"/chats/{chat['id']}/messages"), 404)
    assert_error(await tb.api.delete(f"/chats/{chat['id']}"), 404)
    # Imported again, the chat holds exactly the platform's messages: nothing was left behind.
    await tb.api.post(f"/integrations/{slack['id']}/chats/import", json={"externalChatIds": [slack_ws["general"]]})
    await tb.wait_imported(slack["id"])
    again = (await tb.chats(slack))[slack_ws["general"]]
    assert again["id"] != chat["id"]
    assert len(await tb.messages(again["id"])) == 6
