"""Polling catches what webhooks missed: new messages, recent edits, Gmail history, and an
expired Gmail history mark turns into a full resync."""

from __future__ import annotations

from e2esupport import stored_messages


async def _by_external_id(tb, integration: dict, external_chat_id: str) -> dict:
    """The chat's stored messages by their platform id."""
    chat = await tb.daemon.store.find_chat("cust-1", integration["platform"], external_chat_id)
    assert chat is not None, f"chat {external_chat_id} not stored"
    return {m.external_message_id: m for m in await stored_messages(tb.daemon.store, chat.id)}


def _thread_of(gmail, message_id: str) -> str:
    return gmail._box(None).messages[message_id].thread_id


async def test_a_slack_message_posted_without_a_webhook_is_picked_up_by_the_next_poll(tb) -> None:
    ids = tb.slack.seed_workspace()
    integration = await tb.create_slack()
    general = ids["general"]

    delivery = tb.slack.post_user_message(general, "nobody told you about me", ids["bob"])
    await tb.engine.poll(integration["id"])

    stored = await _by_external_id(tb, integration, general)
    new = stored[f"{general}:{delivery.payload['event']['ts']}"]
    assert new.text == "nobody told you about me" and new.direction == "inbound"
    assert len(stored) == len(tb.slack.truth(general))


async def test_an_edit_inside_the_look_back_window_is_seen_by_a_poll(tb) -> None:
    ids = tb.slack.seed_workspace()
    integration = await tb.create_slack()
    general = ids["general"]
    ts = tb.slack.post_user_message(general, "frist", ids["bob"]).payload["event"]["ts"]
    await tb.engine.poll(integration["id"])

    tb.slack.edit_message(general, ts, "first")  # the message_changed webhook is lost
    await tb.engine.poll(integration["id"])

    edited = (await _by_external_id(tb, integration, general))[f"{general}:{ts}"]
    assert edited.text == "first" and edited.edited_at is not None
    assert len(await _by_external_id(tb, integration, general)) == len(tb.slack.truth(general))


def _seed_mailbox(tb) -> list[str]:
    gmail = tb.gmail
    thread = _thread_of(gmail, gmail.add_incoming(None, "Ana Lima <ana@example.org>", "Order #1", "Where is my order?"))
    gmail.add_incoming(thread, "Ana Lima <ana@example.org>", "Re: Order #1", "Any news?")
    invoice = gmail.add_incoming(None, "Billing <billing@vendor.test>", "Invoice", "Your invoice")
    return [thread, _thread_of(gmail, invoice)]


async def test_gmail_poll_reads_new_email_and_trash_from_history(tb) -> None:
    thread, _ = _seed_mailbox(tb)
    integration = await tb.create_gmail()

    reply = tb.gmail.add_incoming(thread, "Ana Lima <ana@example.org>", "Re: Order #1", "Found it, thanks")
    new_thread_msg = tb.gmail.add_incoming(None, "Bob <bob@example.org>", "Hello", "A new conversation")
    await tb.engine.poll(integration["id"])

    stored = await _by_external_id(tb, integration, thread)
    assert stored[reply].text.strip() == "Found it, thanks"
    assert new_thread_msg in await _by_external_id(tb, integration, _thread_of(tb.gmail, new_thread_msg))

    tb.gmail.trash(reply)
    await tb.engine.poll(integration["id"])
    assert (await _by_external_id(tb, integration, thread))[reply].deleted_at is not None


async def test_an_expired_gmail_history_mark_resyncs_in_full_and_marks_what_is_gone(tb) -> None:
    thread, invoice_thread = _seed_mailbox(tb)
    integration = await tb.create_gmail()
    box = tb.gmail._box(None)
    first, second = box.threads[thread]
    (invoice,) = box.threads[invoice_thread]

    # Changes the history would have told us about, but the mark is too old to ask.
    added = tb.gmail.add_incoming(thread, "Ana Lima <ana@example.org>", "Re: Order #1", "Third mail")
    tb.gmail.trash(second)
    tb.gmail.delete(invoice)
    tb.gmail.expire_history()

    await tb.engine.poll(integration["id"])
    await tb.wait_imported(integration["id"])
    await tb.engine.importer.wait()

    stored = await _by_external_id(tb, integration, thread)
    assert set(stored) == {first, second, added}
    assert stored[first].deleted_at is None and stored[added].deleted_at is None
    assert stored[second].deleted_at is not None
    assert (await _by_external_id(tb, integration, invoice_thread))[invoice].deleted_at is not None

    # The new mark works: the next change comes through history again.
    later = tb.gmail.add_incoming(thread, "Ana Lima <ana@example.org>", "Re: Order #1", "Fourth mail")
    await tb.engine.poll(integration["id"])
    assert later in await _by_external_id(tb, integration, thread)
