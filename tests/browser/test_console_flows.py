"""The web console, used as a person would: by role and by name, in a real browser."""

from __future__ import annotations

import re

import httpx
from browsersupport import log_in, make_bed
from playwright.sync_api import expect

from syncd.models import AppEvent, OutboxItem
from syncd.testbed import ADMIN_TOKEN


def test_log_in_see_the_onboarding_and_log_out(bed, page):
    page.goto("/ui")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.get_by_label("Admin token").fill("not-the-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("not the admin token")

    log_in(page)
    expect(page.get_by_role("heading", name="Connect your first integration")).to_be_visible()
    expect(page.get_by_role("link", name="Connect your first integration")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.goto("/ui/integrations")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    expect(page.get_by_role("heading", name="Log in to syncd")).to_be_visible()


def test_connect_through_the_credentials_form(bed, page):
    log_in(page)
    page.get_by_role("link", name="Connect your first integration").click()
    page.get_by_role("link", name=re.compile("^Slack")).click()
    expect(page.get_by_label("botToken")).to_have_attribute("type", "password")
    token = next(iter(bed.tb.slack.valid_tokens))
    form = page.get_by_role("form", name="With credentials")
    form.get_by_label("Customer id").fill("acme")
    form.get_by_label("Name (optional)").fill("Acme Slack")
    page.get_by_label("botToken").fill(token)
    page.get_by_label("signingSecret").fill(bed.tb.slack.signing_secret)
    page.get_by_role("button", name="Connect", exact=True).click()

    expect(page.get_by_role("heading", name="Slack is connected")).to_be_visible()
    expect(page.get_by_text(re.compile(r"/webhooks/slack/"))).to_be_visible()
    assert token not in page.content()
    assert bed.tb.slack.signing_secret not in page.content()

    page.get_by_role("link", name="Integrations").click()
    row = page.get_by_role("row", name=re.compile("Acme Slack"))
    expect(row).to_contain_text("acme")
    expect(row).to_contain_text("slack")


def test_a_rejected_form_keeps_plain_fields_and_never_echoes_secrets(bed, page):
    log_in(page)
    page.goto("/ui/connect/slack")
    page.get_by_role("form", name="With credentials").get_by_label("Customer id").fill("acme")
    page.get_by_label("botToken").fill("not-a-slack-token-1234")
    page.get_by_label("signingSecret").fill("s3cr3t-value-5678")
    page.get_by_role("button", name="Connect", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("credentials for slack are invalid")
    expect(page.get_by_role("form", name="With credentials").get_by_label("Customer id")).to_have_value("acme")
    assert "not-a-slack-token-1234" not in page.content()
    assert "s3cr3t-value-5678" not in page.content()


def test_import_selected_chats_and_watch_their_progress(bed, page):
    integration = bed.slack(importChats=[])
    log_in(page)
    page.goto(f"/ui/integrations/{integration['id']}")
    page.get_by_role("link", name="Import chats").click()
    # The list comes from the platform: a loading state first, never an empty list.
    group = page.get_by_role("group", name="Available chats")
    expect(group).to_be_visible()
    expect(group.get_by_text("general", exact=True)).to_be_visible()
    group.get_by_role("checkbox", name=re.compile("^general")).check()
    group.get_by_role("checkbox", name=re.compile("^secret-plans")).check()
    page.get_by_role("button", name="Import selected chats").click()

    expect(page.get_by_role("status").first).to_contain_text("Importing 2 chats")
    progress = page.get_by_role("table", name="Import progress per chat")
    general = progress.get_by_role("row", name=re.compile("general"))
    expect(general).to_contain_text("done", timeout=10000)
    expect(general.get_by_role("cell").nth(3)).not_to_have_text("0")
    expect(progress.get_by_role("row", name=re.compile("secret-plans"))).to_contain_text("done")


def test_messages_show_the_customers_own_on_the_right_and_darker(bed, page):
    slack = bed.tb.slack
    slack.add_message(slack.ids["general"], "Sent by our bot", slack.bot_user_id)
    bed.slack()
    log_in(page)
    page.goto("/ui/chats")
    page.get_by_role("link", name=re.compile("^general")).click()
    expect(page.get_by_role("heading", name="general")).to_be_visible()

    messages = page.get_by_role("list", name="Messages")
    own = messages.get_by_role("listitem").filter(has_text="Sent by our bot")
    other = messages.get_by_role("listitem").filter(has_text="Good morning")
    expect(own).to_have_attribute("data-direction", "outbound")
    expect(own).to_contain_text("Sync Bot")
    own_box, other_box = own.bounding_box(), other.bounding_box()
    assert own_box["x"] + own_box["width"] > other_box["x"] + other_box["width"] + 100  # right side
    assert own_box["x"] > other_box["x"]

    def lightness(locator) -> float:
        rgb = locator.evaluate("e => getComputedStyle(e).backgroundColor")
        r, g, b = (int(n) for n in re.findall(r"\d+", rgb)[:3])
        return (r + g + b) / 3

    assert lightness(own) < lightness(other) - 60
    expect(messages.get_by_text("Reply in a thread").first).to_be_visible()


def test_search_finds_chats_by_name(bed, page):
    bed.slack()
    log_in(page)
    page.goto("/ui/chats")
    page.get_by_role("searchbox", name="Search chats").fill("SECRET")
    page.get_by_role("button", name="Search").click()
    chats = page.get_by_role("list", name="Chats")
    expect(chats.get_by_role("link")).to_have_count(1)
    expect(chats.get_by_role("link", name=re.compile("secret-plans"))).to_be_visible()
    page.get_by_role("searchbox", name="Search chats").fill("nothing-like-this")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No chats match")).to_be_visible()


def test_delete_a_chat_through_the_dialog(bed, page):
    bed.slack()
    log_in(page)
    page.goto("/ui/chats")
    page.get_by_role("link", name=re.compile("^general")).click()
    page.get_by_role("link", name="Delete chat").click()
    dialog = page.get_by_role("dialog", name=re.compile("Delete “general”"))
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("6 messages")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()

    page.get_by_role("link", name="Delete chat").click()
    dialog.get_by_role("button", name="Delete chat and 6 messages").click()
    expect(page.get_by_role("status")).to_contain_text("Deleted “general” and its 6 messages")
    expect(page.get_by_role("link", name=re.compile("^general"))).to_have_count(0)


def test_resync_an_integration_and_a_chat(bed, page):
    integration = bed.slack()
    log_in(page)
    page.goto(f"/ui/integrations/{integration['id']}")
    page.get_by_role("button", name="Full resync").click()
    expect(page.get_by_role("status").first).to_contain_text("Resync started")
    progress = page.get_by_role("table", name="Import progress per chat")
    expect(progress.get_by_role("row", name=re.compile("general"))).to_contain_text("done", timeout=10000)

    page.goto("/ui/chats")
    page.get_by_role("link", name=re.compile("^general")).click()
    page.get_by_role("button", name="Resync chat").click()
    expect(page.get_by_role("status").first).to_contain_text("Resync started")


def test_retry_a_dead_letter(bed, page):
    integration = bed.slack()
    general = bed.tb.slack.ids["general"]
    event = AppEvent.model_validate({"id": "evt-dead-1", "type": "message.created", "customerId": "cust-1",
                                     "platform": "slack", "externalChatId": general,
                                     "message": {"id": "app-1", "text": "Sent again from the console"}})
    dead = OutboxItem(customer_id="cust-1", idempotency_key=event.id, type=event.type,
                      payload=event.model_dump(by_alias=True, mode="json"), integration_id=integration["id"],
                      status="dead", attempts=8, error="slack answered channel_not_found")
    store = bed.tb.daemon.store
    bed.run(store.outbox.insert_one({**dead.doc(), "_id": dead.id}))

    log_in(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Failures").click()
    row = page.get_by_role("row", name=re.compile("evt-dead-1"))
    expect(row).to_contain_text("channel_not_found")
    row.get_by_role("button", name="Retry event evt-dead-1").click()
    expect(page.get_by_role("status")).to_contain_text("Queued again")
    expect(page.get_by_role("row", name=re.compile("evt-dead-1"))).to_have_count(0)
    for _ in range(100):
        if bed.run(store.get_outbox(dead.id)).status == "sent":
            break
        page.wait_for_timeout(50)
    assert bed.run(store.get_outbox(dead.id)).status == "sent"
    assert "Sent again from the console" in [m["text"] for m in bed.tb.slack.truth(general)]


def test_the_read_only_pages_work_without_javascript(browser, bed):
    bed.slack()
    context = browser.new_context(base_url=bed.url, java_script_enabled=False)
    try:
        page = context.new_page()
        log_in(page, ADMIN_TOKEN)
        page.goto("/ui/chats")
        page.get_by_role("link", name=re.compile("^general")).click()
        expect(page.get_by_role("list", name="Messages").get_by_role("listitem").first).to_be_visible()
    finally:
        context.close()


def test_connect_through_oauth(server, page):
    clients = {"slack": {"clientId": "sim-client-id", "clientSecret": "sim-client-secret",
                         "signingSecret": "sim-signing-secret"}}
    bed = make_bed(server, oauth_clients=clients, connect_success_url=f"{server.url}/ui/connected")
    try:
        def consent(route) -> None:
            """The platform's consent page, answered by its simulator (which approves at once)."""
            async def ask() -> str:
                async with httpx.AsyncClient(transport=httpx.ASGITransport(bed.tb.slack)) as client:
                    return (await client.get(route.request.url)).headers["location"]

            route.fulfill(status=302, headers={"location": bed.run(ask())})

        page.context.route("https://slack.com/oauth/**", consent)
        log_in(page)
        page.goto("/ui/connect/slack")
        oauth = page.get_by_role("form", name="With Slack sign-in")
        oauth.get_by_label("Customer id").fill("oauth-customer")
        oauth.get_by_role("button", name="Sign in with Slack").click()

        expect(page.get_by_role("heading", name="Slack is connected")).to_be_visible()
        expect(page.get_by_role("status")).to_contain_text("oauth-customer")
        page.get_by_role("link", name="Open the integration").click()
        expect(page.get_by_role("table", name="Import progress per chat")
               .get_by_role("row", name=re.compile("general"))).to_contain_text("done", timeout=10000)
    finally:
        server.run(bed.tb.stop())
