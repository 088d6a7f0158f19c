"""The message merge rules of docs/architecture.md §2, one specification per test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.merge import absorb_echo, merge, sent_changes
from syncd.models import Message, Sender

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)
NOW = T0 + timedelta(hours=1)


def message(**fields) -> Message:
    """A Slack message as the mapping produces it (ids composed as ``{channel}:{ts}``)."""
    base = dict(customer_id="cust-1", integration_id="int-1", platform="slack",
                external_chat_id="C024BE91L", external_message_id="C024BE91L:1512085950.000216",
                sender=Sender(external_user_id="U2147483697"), text="Hello world", sent_at=T0)
    return Message(**{**base, **fields})


def stored(**fields) -> dict:
    """The document MongoDB holds for ``message(**fields)``."""
    doc = merge(None, message(**fields), now=T0).doc_changes
    return {**doc, "_id": doc["id"], "rev": 0}


def test_a_new_message_is_created_with_its_full_document():
    outcome = merge(None, message(), now=NOW)
    assert outcome.kind == "created"
    assert outcome.doc_changes["externalMessageId"] == "C024BE91L:1512085950.000216"
    assert outcome.doc_changes["text"] == "Hello world"
    assert outcome.doc_changes["updatedAt"] == NOW


def test_writing_identical_data_again_changes_nothing():
    outcome = merge(stored(), message(), now=NOW)
    assert outcome.doc_changes == {}
    assert outcome.kind is None


def test_timestamps_read_back_from_mongodb_compare_equal_to_the_incoming_ones():
    precise = T0.replace(microsecond=123456)
    doc = stored(sent_at=precise)
    # MongoDB keeps milliseconds and hands back naive UTC.
    doc["sentAt"] = precise.replace(tzinfo=None, microsecond=123000)
    assert merge(doc, message(sent_at=precise), now=NOW).kind is None


def test_writing_the_same_message_with_new_content_updates_it():
    outcome = merge(stored(), message(text="Hello again", edited_at=LATER), now=NOW)
    assert outcome.kind == "updated"
    assert outcome.doc_changes["text"] == "Hello again"
    assert outcome.doc_changes["editedAt"] == LATER


def test_updated_at_is_set_on_every_real_change():
    outcome = merge(stored(), message(text="Hello again"), now=NOW)
    assert outcome.doc_changes["updatedAt"] == NOW


def test_a_field_the_incoming_message_does_not_say_is_kept():
    outcome = merge(stored(subject="Weekly"), message(text=None, subject=None), now=NOW)
    assert outcome.doc_changes == {}


def test_a_delete_turns_the_message_into_a_tombstone():
    outcome = merge(stored(), message(text=None, sent_at=None, deleted_at=LATER), now=NOW)
    assert outcome.kind == "deleted"
    assert outcome.doc_changes["deletedAt"] == LATER
    assert "text" not in outcome.doc_changes


def test_a_delete_that_arrives_before_the_message_inserts_a_tombstone():
    outcome = merge(None, message(text=None, deleted_at=LATER), now=NOW)
    assert outcome.kind == "deleted"
    assert outcome.doc_changes["deletedAt"] == LATER


def test_a_second_delete_reports_nothing_and_keeps_the_earliest_time():
    tombstone = stored(deleted_at=LATER)
    later = merge(tombstone, message(deleted_at=LATER + timedelta(minutes=1)), now=NOW)
    assert later.doc_changes == {}
    earlier = merge(tombstone, message(deleted_at=T0 + timedelta(minutes=1)), now=NOW)
    assert earlier.kind is None
    assert earlier.doc_changes["deletedAt"] == T0 + timedelta(minutes=1)


def test_a_late_event_cannot_resurrect_a_deleted_message():
    tombstone = stored(deleted_at=LATER)
    outcome = merge(tombstone, message(text="edited after all", edited_at=NOW), now=NOW)
    assert "text" not in outcome.doc_changes
    assert "deletedAt" not in outcome.doc_changes
    assert outcome.kind is None


def test_a_deleted_message_may_still_fill_fields_that_are_empty():
    tombstone = stored(text=None, deleted_at=LATER)
    outcome = merge(tombstone, message(text="Hello world"), now=NOW)
    assert outcome.doc_changes["text"] == "Hello world"
    assert outcome.kind is None


def test_an_older_event_never_overwrites_a_newer_edit():
    edited = stored(text="second version", edited_at=LATER)
    outcome = merge(edited, message(text="first version"), now=NOW)
    assert outcome.doc_changes == {}


def test_an_older_event_may_fill_fields_that_are_empty():
    edited = stored(text="second version", edited_at=LATER)
    outcome = merge(edited, message(text="first version", subject="Weekly"), now=NOW)
    assert outcome.doc_changes["subject"] == "Weekly"
    assert "text" not in outcome.doc_changes


def test_an_event_of_the_same_version_applies_every_field_it_says():
    outcome = merge(stored(), message(text="Hello world!", external_thread_id="1512085950.000216"),
                    now=NOW)
    assert outcome.doc_changes["text"] == "Hello world!"
    assert outcome.doc_changes["externalThreadId"] == "1512085950.000216"


def test_the_platform_never_overwrites_id_origin_app_id_or_creation_time():
    doc = stored(origin="app", app_message_id="app-42", direction="outbound")
    incoming = message(text="Hello world!", origin="platform", app_message_id="other",
                       created_at=NOW)
    changes = merge(doc, incoming, now=NOW).doc_changes
    assert changes.keys().isdisjoint({"id", "origin", "appMessageId", "createdAt"})


def test_the_chat_is_only_set_when_the_stored_message_has_none():
    filled = merge(stored(chat_id=None), message(chat_id="chat-1"), now=NOW)
    assert filled.doc_changes["chatId"] == "chat-1"
    assert merge(stored(chat_id="chat-1"), message(chat_id="chat-2"), now=NOW).doc_changes == {}


def test_a_message_that_came_from_the_app_stays_outbound():
    doc = stored(origin="app", direction="outbound")
    assert merge(doc, message(direction="inbound"), now=NOW).doc_changes == {}


def test_the_sender_and_extra_merge_key_by_key():
    doc = stored(extra={"rfcMessageId": "<a@x>"})
    incoming = message(sender=Sender(name="Ann"), extra={"labels": ["INBOX"]})
    changes = merge(doc, incoming, now=NOW).doc_changes
    assert changes["sender"] == {"externalUserId": "U2147483697", "email": None, "name": "Ann"}
    assert changes["extra"] == {"rfcMessageId": "<a@x>", "labels": ["INBOX"]}


@pytest.mark.parametrize(("current", "proposed", "moves"), [
    (None, "pending", True),
    ("pending", "sent", True),
    ("sent", "delivered", True),
    ("delivered", "read", True),
    ("read", "delivered", False),
    ("delivered", "sent", False),
    ("sent", "pending", False),
    ("failed", "delivered", True),
    ("failed", "sent", False),
])
def test_the_delivery_state_only_moves_forward(current, proposed, moves):
    outcome = merge(stored(delivery_state=current), message(delivery_state=proposed), now=NOW)
    assert (outcome.doc_changes.get("deliveryState") == proposed) is moves


@pytest.mark.parametrize(("current", "moves"), [
    ("pending", True), ("sent", True), ("delivered", False), ("read", False),
])
def test_failed_may_replace_only_pending_or_sent(current, moves):
    outcome = merge(stored(delivery_state=current), message(delivery_state="failed"), now=NOW)
    assert (outcome.doc_changes.get("deliveryState") == "failed") is moves


def test_a_recorded_send_takes_the_echos_platform_fields_and_keeps_the_apps_identity():
    app_doc = stored(origin="app", app_message_id="app-42", sent_at=None, delivery_state="pending",
                     sender=Sender(), extra={"draft": True})
    echo = stored(sent_at=LATER, external_thread_id="1512085950.000216",
                  extra={"clientMsgId": "c-1"})
    sets = sent_changes(app_doc, "C024BE91L:1512085950.000216", None, None, None,
                        absorb_echo({}, echo), NOW)
    assert sets["externalMessageId"] == "C024BE91L:1512085950.000216"
    assert sets["sentAt"] == LATER
    assert sets["deliveryState"] == "sent"
    assert sets["sender"]["externalUserId"] == "U2147483697"
    assert sets["extra"] == {"draft": True, "clientMsgId": "c-1"}
    assert sets.keys().isdisjoint({"id", "origin", "appMessageId", "text"})
