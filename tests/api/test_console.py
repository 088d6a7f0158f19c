"""The web console over HTTP (no browser): its session cookie, CSRF and origin checks, paging,
the platform descriptions its forms are generated from, and that no secret reaches a page."""

from __future__ import annotations

import re

import httpx
import pytest

from syncd.console import platforms
from syncd.console.session import COOKIE
from syncd.models import Chat, Integration, Message, Sender
from syncd.testbed import ADMIN_TOKEN, BASE

ORIGIN = {"origin": BASE}


@pytest.fixture
async def browser(tb):
    """A cookie-keeping client of the daemon, with no bearer token (a person's browser)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(tb.daemon.app), base_url=BASE) as client:
        yield client


async def log_in(client: httpx.AsyncClient) -> str:
    """Logs in; returns the CSRF token of the session's forms."""
    answer = await client.post("/ui/login", data={"token": ADMIN_TOKEN, "next": "/ui"}, headers=ORIGIN)
    assert answer.status_code == 303
    page = await client.get("/ui")
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)


async def test_pages_need_a_login(browser):
    for path in ("/ui", "/ui/integrations", "/ui/chats", "/ui/failures", "/ui/connect/slack"):
        answer = await browser.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/login?next=")


async def test_the_session_cookie_is_signed_httponly_and_strict(browser):
    answer = await browser.post("/ui/login", data={"token": ADMIN_TOKEN}, headers=ORIGIN)
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert ADMIN_TOKEN not in cookie
    browser.cookies.set(COOKIE, browser.cookies[COOKIE][:-2] + "xx")  # tampered
    assert (await browser.get("/ui")).status_code == 303


async def test_a_wrong_token_is_refused_on_the_login_page(browser):
    answer = await browser.post("/ui/login", data={"token": "wrong"}, headers=ORIGIN)
    assert answer.status_code == 401
    assert "not the admin token" in answer.text
    assert COOKIE not in answer.headers.get("set-cookie", "")


async def test_login_redirects_only_inside_the_console(browser):
    answer = await browser.post("/ui/login", data={"token": ADMIN_TOKEN, "next": "https://evil.example/"},
                                headers=ORIGIN)
    assert answer.headers["location"] == "/ui"


async def test_a_rotated_admin_token_ends_the_sessions(tb, browser):
    await log_in(browser)
    tb.daemon.settings.admin_token = type(tb.daemon.settings.admin_token)("a-new-token")
    assert (await browser.get("/ui")).status_code == 303


async def test_a_form_without_its_csrf_token_is_refused(tb, browser, slack):
    await log_in(browser)
    answer = await browser.post(f"/ui/integrations/{slack['id']}/resync", data={}, headers=ORIGIN)
    assert answer.status_code == 403
    assert "security token" in answer.text
    assert answer.headers["content-type"].startswith("text/html")


async def test_a_form_from_another_origin_is_refused_even_with_its_token(browser, slack):
    csrf = await log_in(browser)
    for other in ("http://syncd.test:8081", "http://evil.example"):
        answer = await browser.post(f"/ui/integrations/{slack['id']}/resync", data={"csrf": csrf},
                                    headers={"origin": other})
        assert answer.status_code == 403
    answer = await browser.post(f"/ui/integrations/{slack['id']}/resync", data={"csrf": csrf},
                                headers={"referer": "http://evil.example/page"})
    assert answer.status_code == 403
    answer = await browser.post(f"/ui/integrations/{slack['id']}/resync", data={"csrf": csrf}, headers=ORIGIN)
    assert answer.status_code == 303


async def test_login_from_another_origin_is_refused(browser):
    answer = await browser.post("/ui/login", data={"token": ADMIN_TOKEN}, headers={"origin": "http://evil.example"})
    assert answer.status_code == 403
    assert COOKIE not in answer.headers.get("set-cookie", "")


async def test_logout_needs_the_csrf_token_and_ends_the_session(browser):
    csrf = await log_in(browser)
    assert (await browser.post("/ui/logout", data={}, headers=ORIGIN)).status_code == 403
    answer = await browser.post("/ui/logout", data={"csrf": csrf}, headers=ORIGIN)
    assert answer.status_code == 303
    assert (await browser.get("/ui")).status_code == 303


async def test_the_console_is_off_without_an_admin_token(make_tb):
    tb = await make_tb(admin_token=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(tb.daemon.app), base_url=BASE) as client:
        page = await client.get("/ui/login")
        assert "SYNCD_ADMIN_TOKEN" in page.text
        assert (await client.post("/ui/login", data={"token": ""}, headers=ORIGIN)).status_code == 503


async def test_the_platform_description_comes_from_the_credential_schema(tb):
    slack = platforms.describe(tb.engine, "slack")
    assert slack["name"] == "slack"
    fields = {f["name"]: f for f in slack["credentials"]}
    assert {k: fields["botToken"][k] for k in ("name", "required", "secret", "generated")} == {
        "name": "botToken", "required": True, "secret": True, "generated": False}
    assert "xoxb-" in fields["botToken"]["description"]  # the manifest's words for the form
    assert slack["capabilities"]["history"] is True
    assert slack["capabilities"]["oauth"] is False  # no OAuth app configured
    gmail = {f["name"]: f for f in platforms.describe(tb.engine, "gmail")["credentials"]}
    assert gmail["emailAddress"]["secret"] is False
    assert gmail["refreshToken"]["required"] is False
    telegram = {f["name"]: f for f in platforms.describe(tb.engine, "telegram")["credentials"]}
    assert telegram["secretToken"]["generated"] is True
    assert telegram["secretToken"]["required"] is False
    with pytest.raises(KeyError):
        platforms.describe(tb.engine, "no-such-platform")


async def test_every_platform_gets_a_form_with_secrets_in_password_fields(tb, browser):
    await log_in(browser)
    for name in platforms.names(tb.engine):
        page = await browser.get(f"/ui/connect/{name}")
        assert page.status_code == 200, name
        for field in platforms.describe(tb.engine, name)["credentials"]:
            kind = "password" if field["secret"] else "text"
            assert re.search(rf'name="credentials\.{field["name"]}" type="{kind}"', page.text), (name, field)
    assert (await browser.get("/ui/connect/no-such-platform")).status_code == 404


async def test_stored_secrets_never_reach_a_page(tb, browser, slack):
    await log_in(browser)
    token = next(iter(tb.slack.valid_tokens))
    paths = ["/ui", "/ui/integrations", f"/ui/integrations/{slack['id']}", "/ui/chats", "/ui/failures",
             f"/ui/integrations/{slack['id']}/available"]
    for path in paths:
        page = await browser.get(path)
        assert page.status_code == 200, path
        assert token not in page.text and tb.slack.signing_secret not in page.text, path


async def test_the_integrations_list_is_paged_and_filtered(tb, browser):
    store = tb.daemon.store
    for n in range(120):
        await store.insert_integration(Integration(customer_id=f"cust-{n % 3}", platform="slack",
                                                   name=f"Workspace {n:03d}"), {"botToken": "xoxb-x"})
    await log_in(browser)
    first = await browser.get("/ui/integrations")
    assert first.text.count('href="/ui/integrations/') - first.text.count("/import") == 50
    assert "Page 1 of 3 (120 in all)" in first.text
    last = await browser.get("/ui/integrations?page=3")
    assert "Page 3 of 3" in last.text
    only = await browser.get("/ui/integrations?customer=cust-1")
    assert "40 in all" in only.text
    assert "cust-2" not in only.text.split("<tbody>")[1]
    errors = await browser.get("/ui/integrations?status=error")
    assert "No integrations match" in errors.text


async def test_a_long_chat_opens_on_its_newest_messages_and_pages_back(tb, browser):
    store = tb.daemon.store
    chat = Chat(customer_id="cust-1", integration_id="i-1", platform="slack", external_chat_id="C1",
                name="Ünïcødé 聊天", imported=True)
    await store.chats.insert_one({**chat.doc(), "_id": chat.id})
    from datetime import UTC, datetime, timedelta
    start = datetime(2026, 1, 1, tzinfo=UTC)
    docs = [Message(customer_id="cust-1", integration_id="i-1", platform="slack", chat_id=chat.id,
                    external_chat_id="C1", external_message_id=f"C1:{n}", text=f"message number {n}",
                    sender=Sender(name="Zoë"), sent_at=start + timedelta(minutes=n)).doc() for n in range(130)]
    await store.messages.insert_many([{**d, "_id": d["id"]} for d in docs])
    await log_in(browser)
    page = await browser.get(f"/ui/chats/{chat.id}")
    assert "Ünïcødé 聊天" in page.text and "130 messages" in page.text
    assert "message number 129<" in page.text and "message number 80<" in page.text
    assert "message number 79<" not in page.text
    older = re.search(r'href="(/ui/chats/[^"]+before=[^"]+)">Older messages', page.text).group(1)
    page = await browser.get(older.replace("&amp;", "&"))
    assert "message number 79<" in page.text and "message number 129<" not in page.text
    assert (await browser.get(f"/ui/chats/{chat.id}?before=garbage")).status_code == 400


async def test_chat_search_is_plain_text(tb, browser, slack):
    await log_in(browser)
    page = await browser.get("/ui/chats?q=.*")
    assert "No chats match" in page.text
    page = await browser.get("/ui/chats?q=GENERAL")
    assert ">general<" in page.text


async def test_the_vendored_script_is_served_from_the_package(browser):
    await log_in(browser)
    script = await browser.get("/ui/static/htmx.min.js")
    assert script.status_code == 200 and "htmx" in script.text[:200]
    assert (await browser.get("/ui/static/../console.py")).status_code == 404
    assert (await browser.get("/ui/static/nothing.js")).status_code == 404


async def test_retrying_something_that_is_not_dead_is_a_clear_404(browser):
    csrf = await log_in(browser)
    answer = await browser.post("/ui/failures/events/nope/retry", data={"csrf": csrf}, headers=ORIGIN)
    assert answer.status_code == 404
    assert "not dead-lettered" in answer.text


async def test_importing_nothing_is_refused(browser, slack):
    csrf = await log_in(browser)
    answer = await browser.post(f"/ui/integrations/{slack['id']}/import", data={"csrf": csrf}, headers=ORIGIN)
    assert answer.status_code == 422
    assert "Select at least one chat" in answer.text
