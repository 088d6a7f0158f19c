"""Threading shared by the email platforms: subjects, Message-ID lists, thread assignment and
the headers of a reply."""

from __future__ import annotations

import pytest

from syncd.providers.email_threads import (
    ThreadIndex,
    Threading,
    content_id,
    message_ids,
    normalized_subject,
    reply_references,
    reply_subject,
    thread_id,
)


@pytest.mark.parametrize(("subject", "name"), [
    ("Re: Hello", "Hello"), ("RE: re: Fwd: Hello", "Hello"), ("AW: WG: Angebot", "Angebot"),
    ("Re[2]: Hello", "Hello"), ("Fw:  spaced   out ", "spaced out"), ("SV: Svar", "Svar"),
    ("回复: 你好", "你好"), ("Hello: world", "Hello: world"), ("Rebate offer", "Rebate offer"), ("", ""),
])
def test_reply_and_forward_prefixes_are_removed_from_the_subject(subject, name):
    assert normalized_subject(subject) == name


def test_message_id_lists_keep_order_and_drop_repeats():
    assert message_ids("<a@x> <b@x>\r\n <a@x>") == ["a@x", "b@x"]
    assert message_ids(None) == []


def email(key, subject="Hi", in_reply_to=None, references=()):
    return Threading(key=key, in_reply_to=in_reply_to, references=tuple(references), subject=subject)


def test_references_root_then_in_reply_to_then_subject_decide_the_thread():
    index = ThreadIndex()
    root = index.assign(email("r@x", "Plan"))
    assert root == thread_id("r@x")
    assert index.assign(email("a@x", "Re: Plan", "r@x", ["r@x"])) == root
    assert index.assign(email("b@x", "Re: Plan", "a@x")) == root  # parent known: its thread
    assert index.assign(email("c@x", "RE: plan")) == root  # no headers, a reply subject
    assert index.assign(email("d@x", "Plan")) != root  # same subject, not a reply: a new thread
    assert index.name(root) == "Plan"


def test_thread_ids_do_not_depend_on_the_order_emails_are_read_in():
    one, two = ThreadIndex(), ThreadIndex()
    reply = email("a@x", "Re: Plan", "r@x", ["r@x"])
    assert one.assign(reply) == two.assign(email("r@x", "Plan")) == thread_id("r@x")
    assert one.assign(email("r@x", "Plan")) == two.assign(reply)


def test_a_reply_carries_the_parents_references_and_id():
    assert reply_references("<p@x>", "<r@x> <q@x>") == ("<p@x>", "<r@x> <q@x> <p@x>")
    assert reply_references("p@x", None) == ("<p@x>", "<p@x>")
    assert reply_references(None, "<r@x>") == (None, None)
    assert reply_subject("Plan") == "Re: Plan" and reply_subject("re: Plan") == "re: Plan"


def test_content_ids_are_stable_and_tell_fields_apart():
    assert content_id(["a", "b"]) == content_id(["a", "b"])
    assert content_id(["ab", ""]) != content_id(["a", "b"])
