"""The imap connector against a real Dovecot and SMTP server: import, threads, paging and
its checkpoint, UIDVALIDITY changes, polling, MIME, sending and deleting."""

from __future__ import annotations

import email
import email.policy
import json

import pytest
from imapsupport import expunge, make_connector

from syncd.kit.errors import AuthError, PermanentError, TransientError
from syncd.providers.imap import connector as imap_connector
from syncd.universal import ChatData, OutgoingMessage


async def all_messages(connector, chat):
    out, cursor = [], None
    while True:
        page = await connector.fetch_history_page(chat, cursor)
        out += page.messages
        cursor = page.next_cursor
        if cursor is None:
            return out


async def test_import_reads_inbox_sent_and_chosen_folders_as_threads_named_by_subject(account):
    root = account.receive("Alice <alice@outside.test>", "Quarterly report")
    account.receive("Alice <alice@outside.test>", "AW: Re: Quarterly report", in_reply_to=root, references=root)
    sent = ("From: " + account.email + "\r\nTo: alice@outside.test\r\nSubject: Re: Quarterly report\r\n"
            "Message-ID: <mine-1@example.test>\r\nIn-Reply-To: " + root + "\r\nReferences: " + root + "\r\n"
            "Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nThanks\r\n").encode()
    account.file_in("Sent", sent)
    account.file_in("Archive", b"From: carol@outside.test\r\nTo: " + account.email.encode() +
                    b"\r\nSubject: Fwd: Old news\r\nMessage-ID: <old-1@outside.test>\r\n\r\nold\r\n")
    connector = make_connector(account.credentials(), {"folders": ["Archive"]})
    try:
        chats = {c.name: c for c in await connector.list_chats()}
        assert set(chats) == {"Quarterly report", "Old news"}
        assert chats["Quarterly report"].kind == "email_thread"
        assert {"alice@outside.test", account.email} <= set(chats["Quarterly report"].participants)
        report = await all_messages(connector, chats["Quarterly report"])
        assert sorted(m.text.strip() for m in report) == ["Thanks", "hello", "hello"]
        assert len({m.external_message_id for m in report}) == 3
        mine = next(m for m in report if m.external_message_id == "mine-1@example.test")
        assert mine.sender.email == account.email and mine.extra["folder"] == "Sent"
        assert [m.subject for m in await all_messages(connector, chats["Old news"])] == ["Fwd: Old news"]
    finally:
        await connector.close()


async def test_an_email_in_inbox_and_sent_is_one_message(account):
    raw = ("From: " + account.email + "\r\nTo: " + account.email + "\r\nSubject: Note to self\r\n"
           "Message-ID: <self-1@example.test>\r\n\r\nremember\r\n").encode()
    account.receive(account.email, "", raw=raw)
    account.file_in("Sent", raw)
    connector = make_connector(account.credentials())
    try:
        [chat] = await connector.list_chats()
        messages = await all_messages(connector, chat)
        assert [m.external_message_id for m in messages] == ["self-1@example.test"]
    finally:
        await connector.close()


async def test_history_pages_carry_uidvalidity_and_last_uid_per_folder_and_resume(account, monkeypatch):
    monkeypatch.setattr(imap_connector, "PAGE_SIZE", 2)
    root = account.receive("Alice <alice@outside.test>", "Long thread")
    ids = [root]
    for n in range(4):
        ids.append(account.receive("Alice <alice@outside.test>", "Re: Long thread", body=f"reply {n}",
                                   in_reply_to=ids[-1], references=" ".join(ids)))
    connector = make_connector(account.credentials())
    try:
        [chat] = await connector.list_chats()
        first = await connector.fetch_history_page(chat, None)
        assert len(first.messages) == 2
        cursor = json.loads(first.next_cursor)
        uidvalidity = int(account.servers.dovecot.doveadm("mailbox", "status", "-u", account.email,
                                                           "uidvalidity", "INBOX").split("=")[1])
        assert cursor == {"INBOX": [uidvalidity, 2]}
    finally:
        await connector.close()
    # A new process (a crash and restart) resumes from the stored cursor.
    again = make_connector(account.credentials())
    try:
        rest, cursor = [], first.next_cursor
        while cursor:
            page = await again.fetch_history_page(chat, cursor)
            rest += page.messages
            cursor = page.next_cursor
        texts = [m.text.strip() for m in first.messages + rest]
        assert sorted(texts) == sorted(["hello", "reply 0", "reply 1", "reply 2", "reply 3"])
    finally:
        await again.close()


async def test_a_cursor_from_before_a_uidvalidity_change_rereads_that_folder(account, monkeypatch):
    monkeypatch.setattr(imap_connector, "PAGE_SIZE", 2)
    root = account.receive("Alice <alice@outside.test>", "Reset me")
    for n in range(2):
        account.receive("Alice <alice@outside.test>", "Re: Reset me", body=f"r{n}", in_reply_to=root, references=root)
    connector = make_connector(account.credentials())
    try:
        [chat] = await connector.list_chats()
        first = await connector.fetch_history_page(chat, None)
        account.servers.dovecot.doveadm("mailbox", "update", "-u", account.email, "--uid-validity", "12345", "INBOX")
        await (await connector.mailbox()).refresh()
        page = await connector.fetch_history_page(chat, first.next_cursor)
        assert len(page.messages) == 2 and page.next_cursor is not None  # from the start again
        rest = await connector.fetch_history_page(chat, page.next_cursor)
        ids = {m.external_message_id for m in page.messages + rest.messages}
        assert len(ids) == 3
    finally:
        await connector.close()


async def test_poll_finds_new_mail_and_expunged_mail(account, connector):
    first = account.receive("Alice <alice@outside.test>", "Before")
    mark = (await connector.poll(None, [], 0)).state
    await connector.list_chats()
    second = account.receive("Bob <bob@outside.test>", "Re: Before", in_reply_to=first, references=first)
    fresh = account.receive("Dan <dan@outside.test>", "Brand new")
    polled = await connector.poll(mark, [], 0)
    assert {m.external_message_id for m in polled.changes.messages} == {second.strip("<>"), fresh.strip("<>")}
    assert {c.name for c in polled.changes.chats} == {"Before", "Brand new"}
    expunge(account, "INBOX", first)
    gone = await connector.poll(polled.state, [], 0)
    [tombstone] = gone.changes.messages
    assert tombstone.external_message_id == first.strip("<>") and tombstone.deleted_at is not None
    assert (await connector.poll(gone.state, [], 0)).changes.messages == []


async def test_poll_rereads_a_folder_whose_uidvalidity_changed_without_tombstones(account, connector):
    account.receive("Alice <alice@outside.test>", "Kept")
    mark = (await connector.poll(None, [], 0)).state
    account.servers.dovecot.doveadm("mailbox", "update", "-u", account.email, "--uid-validity", "777", "INBOX")
    polled = await connector.poll(mark, [], 0)
    assert [m.subject for m in polled.changes.messages] == ["Kept"]
    assert all(m.deleted_at is None for m in polled.changes.messages)
    assert polled.state["folders"]["INBOX"]["uidvalidity"] == 777


async def test_an_email_without_message_id_keeps_one_id_across_a_uidvalidity_change(account, connector):
    raw = (b"From: old@outside.test\r\nTo: " + account.email.encode() +
           b"\r\nSubject: No id\r\nDate: Tue, 3 Nov 2026 09:00:00 +0000\r\n\r\nbody\r\n")
    account.receive("old@outside.test", "", raw=raw)
    [chat] = await connector.list_chats()
    [before] = await all_messages(connector, chat)
    assert before.external_message_id.startswith("sha256-")
    account.servers.dovecot.doveadm("mailbox", "update", "-u", account.email, "--uid-validity", "4242", "INBOX")
    again = make_connector(account.credentials())
    try:
        [chat_again] = await again.list_chats()
        [after] = await all_messages(again, chat_again)
        assert (chat_again.external_chat_id, after.external_message_id) == (chat.external_chat_id,
                                                                            before.external_message_id)
    finally:
        await again.close()


MIME = (
    b"From: =?iso-8859-1?q?Andr=E9?= <andre@outside.test>\r\n"
    b"To: {to}\r\n"
    b"Subject: =?utf-8?b?UmU6IOaXpeacrOiqnuOBruS7tuWQjQ==?=\r\n"
    b"Message-ID: <mime-1@outside.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
) + "Привет".encode("koi8-r") + (
    "\r\n--inner\r\n"
    "Content-Type: text/html; charset=utf-8\r\n\r\n<p>Привет</p>\r\n"
    "--inner--\r\n"
    "--outer\r\n"
    'Content-Type: application/pdf; name="=?utf-8?q?b=C3=A9la.pdf?="\r\n'
    'Content-Disposition: attachment; filename="=?utf-8?q?b=C3=A9la.pdf?="\r\n'
    "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
    "--outer--\r\n"
).encode()


async def test_mime_headers_charsets_alternatives_and_attachments_are_decoded(account, connector):
    account.receive("andre@outside.test", "", raw=MIME.replace(b"{to}", account.email.encode()))
    [chat] = await connector.list_chats()
    assert chat.name == "日本語の件名"
    [message] = await all_messages(connector, chat)
    assert message.subject == "Re: 日本語の件名"
    assert message.sender.name == "André" and message.sender.email == "andre@outside.test"
    assert message.text.strip() == "Привет" and message.html.strip() == "<p>Привет</p>"
    [attachment] = message.attachments
    assert (attachment.name, attachment.mime_type, attachment.size) == ("béla.pdf", "application/pdf", 9)


async def test_a_reply_is_submitted_threaded_and_filed_in_sent_once(account, connector):
    root = account.receive("Alice <alice@outside.test>", "Lunch?", to=f"{account.email}, carol@outside.test")
    [chat] = await connector.list_chats()
    [parent] = await all_messages(connector, chat)
    mark = (await connector.poll(None, [chat], 0)).state
    before = len(account.servers.smtp.received)
    result = await connector.send(OutgoingMessage(chat=chat, text="Yes, at noon", reply_to=parent,
                                                  app_message_id="app-1"))
    mail_from, rcpt, raw = account.servers.smtp.received[before]
    sent = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail_from == account.email and sorted(rcpt) == ["alice@outside.test", "carol@outside.test"]
    assert sent["Subject"] == "Re: Lunch?" and sent["In-Reply-To"] == root and sent["References"] == root
    assert sent["Message-ID"] == f"<{result.external_message_id}>"
    assert result.external_thread_id == chat.external_chat_id
    echo = await connector.poll(mark, [chat], 0)
    assert [(m.external_message_id, m.external_chat_id, m.extra["folder"]) for m in echo.changes.messages] == [
        (result.external_message_id, chat.external_chat_id, "Sent")]
    assert echo.changes.chats == []


async def test_a_retried_send_carries_the_same_message_id(account, connector):
    chat = ChatData(external_chat_id="thread-x", name="Hi", participants=["alice@outside.test"])
    first = await connector.send(OutgoingMessage(chat=chat, text="one", app_message_id="app-7"))
    second = await connector.send(OutgoingMessage(chat=chat, text="one", app_message_id="app-7"))
    assert first.external_message_id == second.external_message_id


@pytest.mark.parametrize(("answer", "error"), [("451 4.3.0 try again later", TransientError),
                                                ("554 5.7.1 rejected as spam", PermanentError)])
async def test_smtp_4xx_is_retryable_and_5xx_is_not(account, connector, answer, error):
    chat = ChatData(external_chat_id="thread-y", name="Hi", participants=["alice@outside.test"])
    account.servers.smtp.answer = answer
    with pytest.raises(error, match=answer.split()[0]):
        await connector.send(OutgoingMessage(chat=chat, text="x", app_message_id="app-8"))


async def test_delete_expunges_the_email_from_every_folder(account, connector):
    raw = ("From: " + account.email + "\r\nTo: bob@outside.test\r\nSubject: Oops\r\n"
           "Message-ID: <oops-1@example.test>\r\n\r\nwrong\r\n").encode()
    account.receive(account.email, "", raw=raw)
    account.file_in("Sent", raw)
    [chat] = await connector.list_chats()
    await connector.delete(OutgoingMessage(chat=chat, external_message_id="oops-1@example.test"))
    assert await connector.list_chats() == []
    assert await all_messages(connector, chat) == []


async def test_delete_to_trash_moves_the_email(account):
    account.receive("Bob <bob@outside.test>", "Spam", message_id="<spam-1@outside.test>")
    connector = make_connector(account.credentials(), {"deleteTo": "Trash", "folders": ["Trash"]})
    try:
        [chat] = await connector.list_chats()
        await connector.delete(OutgoingMessage(chat=chat, external_message_id="spam-1@outside.test"))
        box = await connector.mailbox()
        assert {folder for folder, _ in box.emails["spam-1@outside.test"].places} == {"Trash"}
    finally:
        await connector.close()


async def test_implicit_tls_works_and_a_wrong_password_is_refused_without_echoing_it(account):
    good = make_connector(account.credentials(imapSecurity="ssl", imapPort=account.servers.dovecot.imaps_port))
    try:
        assert [u.external_user_id for u in await good.identify()] == [account.email]
    finally:
        await good.close()
    bad = make_connector(account.credentials(password="not-the-Pa55word"))
    try:
        with pytest.raises(AuthError, match="IMAP login failed") as failed:
            await bad.identify()
        assert "not-the-Pa55word" not in str(failed.value)
    finally:
        await bad.close()


@pytest.mark.parametrize("which", ["imap", "smtp"])
async def test_an_unreachable_host_is_refused_by_identify(account, which):
    from mailservers import free_port

    port = free_port()  # nothing listens there
    bad = make_connector(account.credentials(**{f"{which}Port": port}))
    try:
        with pytest.raises(AuthError, match=f"cannot reach the {which.upper()} server 127.0.0.1:{port}"):
            await bad.identify()
    finally:
        await bad.close()


async def test_a_wrong_smtp_password_is_refused(account):
    # Same mailbox for IMAP, another user name for SMTP: only the submission login fails.
    bad = make_connector(account.credentials(username=account.email))
    bad.smtp.credentials = bad.smtp.credentials.model_copy(update={"password": "nope-nope"})
    try:
        with pytest.raises(AuthError, match="SMTP login failed") as failed:
            await bad.identify()
        assert "nope-nope" not in str(failed.value)
    finally:
        await bad.close()


async def test_a_uidvalidity_change_between_listing_and_reading_is_caught_not_misread(account, monkeypatch):
    monkeypatch.setattr(imap_connector, "PAGE_SIZE", 1)
    root = account.receive("Alice <alice@outside.test>", "Moving target")
    account.receive("Alice <alice@outside.test>", "Re: Moving target", in_reply_to=root, references=root)
    connector = make_connector(account.credentials())
    try:
        [chat] = await connector.list_chats()
        first = await connector.fetch_history_page(chat, None)
        account.servers.dovecot.doveadm("mailbox", "update", "-u", account.email, "--uid-validity", "31", "INBOX")
        with pytest.raises(TransientError, match="UIDVALIDITY"):
            await connector.fetch_history_page(chat, first.next_cursor)
        again = await all_messages(connector, chat)  # the import's retry: from the folder's start
        assert len({m.external_message_id for m in again}) == 2
    finally:
        await connector.close()
