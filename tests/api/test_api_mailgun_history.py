"""Mailgun's history through the HTTP API: the domain's event log read until an empty page,
each stored email of the incoming address read back and threaded (a reply without threading
headers found by its subject), the address's own emails outbound, emails of other addresses
and emails no longer stored left out; then a reply to an imported thread."""

from __future__ import annotations

from typing import Any

import pytest
from apisupport import chat_messages

from syncd.providers import email_threads
from syncd.providers.mailgun.sim import MailgunEmail, MailgunSimulator
from syncd.testbed import Testbed

BOB, CAROL = "bob@example.net", "carol@example.org"


@pytest.fixture
def sim() -> MailgunSimulator:
    return MailgunSimulator()


@pytest.fixture
async def tb(sim):
    tb = await Testbed.start(sims={"mailgun": sim})
    yield tb
    await tb.stop()


def seed(sim: MailgunSimulator) -> dict[str, MailgunEmail]:
    question = sim.add(BOB, "Help", "my order is late", at=1_000)
    answer = sim.add(sim.address, "Re: Help", "it ships today", reply_to=question.message_id, at=1_010)
    thanks = sim.add(BOB, "Re: Help", "thanks", at=1_020)  # a client that drops In-Reply-To/References
    other = sim.add(CAROL, "Invoice", "where is my invoice?", at=1_030)
    elsewhere = sim.add("dan@example.com", "Sales", "a quote please", at=1_040)
    elsewhere.to = [f"sales@{sim.domain}"]  # another address of the same domain
    gone = sim.add(CAROL, "Old", "past retention", at=1_050)
    gone.expired = True
    return {"question": question, "answer": answer, "thanks": thanks, "other": other, "elsewhere": elsewhere,
            "gone": gone}


async def imported(tb: Testbed, sim: MailgunSimulator) -> dict[str, Any]:
    integration = await tb.create("mailgun", sim.trial_credentials())
    assert integration["status"] == "active"
    return integration


async def test_an_import_threads_the_stored_emails_of_the_incoming_address(tb, sim):
    emails = seed(sim)
    integration = await imported(tb, sim)
    chats = await tb.chats(integration)
    help_thread = email_threads.thread_id(emails["question"].message_id)
    invoice_thread = email_threads.thread_id(emails["other"].message_id)
    assert set(chats) == {help_thread, invoice_thread}
    assert chats[help_thread]["name"] == "Help" and chats[help_thread]["participants"] == [BOB]
    stored = await chat_messages(tb, integration, help_thread)
    assert sorted((m["externalMessageId"], m["text"], m["direction"]) for m in stored) == sorted([
        (emails["question"].message_id, "my order is late", "inbound"),
        (emails["answer"].message_id, "it ships today", "outbound"),
        (emails["thanks"].message_id, "thanks", "inbound"),
    ])
    [invoice] = await chat_messages(tb, integration, invoice_thread)
    assert invoice["text"] == "where is my invoice?" and invoice["sentAt"].startswith("1970-01-01T00:17:10")
    # One page of events, then the empty page that ends the log (its paging.next is still named).
    assert sim.faults.calls["events"] == 2
    assert sim.faults.calls["stored"] == 5  # read once per email, not once per event


async def test_the_event_log_is_asked_for_stored_and_sent_emails_oldest_first(tb, sim):
    seed(sim)
    await imported(tb, sim)
    assert sim.event_queries == [{"event": "accepted OR stored", "ascending": "yes", "limit": "300"}]


async def test_a_reply_to_an_imported_thread_goes_to_its_participant_with_the_thread_named(tb, sim):
    emails = seed(sim)
    integration = await imported(tb, sim)
    thread = email_threads.thread_id(emails["question"].message_id)
    event = {"id": "evt-mg-h", "type": "message.created", "customerId": "cust-1", "platform": "mailgun",
             "externalChatId": thread, "message": {"id": "app-mg-h", "text": "any news?"}}
    assert (await tb.post_event(event)).status_code == 202
    await tb.settle()
    [form] = sim.sent_forms
    fields = dict(form)
    assert [v for k, v in form if k == "to"] == [BOB]
    assert fields["subject"] == "Help" and fields["v:syncd-thread"] == thread
    stored = await chat_messages(tb, integration, thread)
    assert any(m["text"] == "any news?" and m["externalMessageId"] for m in stored)
