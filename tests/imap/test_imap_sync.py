"""A mailbox integration end to end through syncd's HTTP API, against the real Dovecot and
SMTP server: create (and refuse bad settings), import, direction, live mail by polling (with
IDLE turned off; IDLE is in ``test_imap_idle.py``), a reply
from the app on the wire with its Sent copy merged, expunges and UIDVALIDITY changes."""

from __future__ import annotations

import email
import email.policy

import pytest
from imapsupport import expunge

from syncd.testbed import Testbed


@pytest.fixture
async def bed():
    bed = await Testbed.start()
    yield bed
    await bed.stop()


async def only_chat(bed, integration):
    chats = await bed.chats(integration)
    assert len(chats) == 1, chats
    return next(iter(chats.values()))


async def test_a_wrong_password_is_refused_and_no_integration_is_kept(bed, account):
    response = await bed.api.post("/integrations", json={
        "platform": "imap", "customerId": "cust-1", "credentials": account.credentials(password="wrong-Pa55")})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "credentials_rejected" and "IMAP login failed" in error["message"]
    assert "wrong-Pa55" not in response.text
    listed = (await bed.api.get("/integrations", params={"platform": "imap"})).json()["integrations"]
    assert listed == []


async def test_an_unreachable_server_is_refused(bed, account):
    from mailservers import free_port

    response = await bed.api.post("/integrations", json={
        "platform": "imap", "customerId": "cust-1", "credentials": account.credentials(imapPort=free_port())})
    assert response.status_code == 422
    assert "cannot reach the IMAP server" in response.json()["error"]["message"]


@pytest.mark.parametrize(("field", "value"), [("imapSecurity", "tls1"), ("email", "not-an-address"),
                                               ("smtpPort", 70000), ("pop3Host", "x")])
async def test_invalid_credentials_are_refused_by_field(bed, account, field, value):
    response = await bed.api.post("/integrations", json={
        "platform": "imap", "customerId": "cust-1", "credentials": account.credentials(**{field: value})})
    assert response.status_code == 422
    assert field in response.text
    assert account.password not in response.text


async def test_import_direction_reply_echo_expunge_and_uidvalidity(bed, account):
    root = account.receive("Alice <alice@outside.test>", "Project kickoff")
    # Polls driven by hand, one at a time: no IDLE waking polls of its own (test_imap_idle.py).
    integration = await bed.create("imap", account.credentials(), settings={"idle": False})
    assert integration["status"] == "active" and "password" not in str(integration)
    chat = await only_chat(bed, integration)
    assert chat["name"] == "Project kickoff" and chat["kind"] == "email_thread"
    [first] = await bed.messages(chat["id"])
    assert first["direction"] == "inbound" and first["sender"]["email"] == "alice@outside.test"

    # Live: a reply from outside arrives and is found by the next poll.
    reply = account.receive("Alice <alice@outside.test>", "Re: Project kickoff", body="agenda attached",
                            in_reply_to=root, references=root)
    await bed.engine.poller.poll(integration["id"])
    assert [m["text"].strip() for m in await bed.messages(chat["id"])] == ["agenda attached", "hello"]

    # The app replies: SMTP carries the threading headers, the Sent copy merges into one message.
    before = len(account.servers.smtp.received)
    posted = await bed.post_event({"id": "evt-1", "type": "message.created", "customerId": "cust-1",
                                   "platform": "imap", "chatId": chat["id"],
                                   "message": {"id": "app-msg-1", "text": "See you Monday"}})
    assert posted.status_code == 202
    await bed.settle()
    _, rcpt, raw = account.servers.smtp.received[before]
    sent = email.message_from_bytes(raw, policy=email.policy.default)
    assert rcpt == ["alice@outside.test"] and sent["Subject"] == "Re: Project kickoff"
    assert sent["In-Reply-To"] == reply and sent["References"] == f"{root} {reply}"
    await bed.engine.poller.poll(integration["id"])
    messages = await bed.messages(chat["id"])
    assert len(messages) == 3
    mine = next(m for m in messages if m["appMessageId"] == "app-msg-1")
    assert mine["direction"] == "outbound" and mine["externalMessageId"] == sent["Message-ID"].strip("<>")
    assert mine["extra"]["folder"] == "Sent"  # the echo from the Sent folder merged into it

    # An expunge is a tombstone (live, and after a full resync nothing comes back).
    expunge(account, "INBOX", reply)
    await bed.engine.poller.poll(integration["id"])
    gone = next(m for m in await bed.messages(chat["id"]) if m["externalMessageId"] == reply.strip("<>"))
    assert gone["deletedAt"] is not None

    # A UIDVALIDITY change re-reads the folder: nothing duplicated, nothing lost.
    account.servers.dovecot.doveadm("mailbox", "update", "-u", account.email, "--uid-validity", "99", "INBOX")
    await bed.engine.poller.poll(integration["id"])
    response = await bed.api.post(f"/integrations/{integration['id']}/resync", json={"full": True})
    assert response.status_code == 202
    await bed.wait_imported(integration["id"])
    after = await bed.messages(chat["id"])
    assert len(after) == 3 and len({m["externalMessageId"] for m in after}) == 3
    assert sorted(m["externalMessageId"] for m in after if m["deletedAt"] is None) == sorted(
        [root.strip("<>"), mine["externalMessageId"]])
    assert len(await bed.chats(integration)) == 1


async def test_an_expunge_while_syncd_was_away_is_a_tombstone_after_a_full_resync(bed, account):
    keep = account.receive("Alice <alice@outside.test>", "Two emails")
    drop = account.receive("Alice <alice@outside.test>", "Re: Two emails", in_reply_to=keep, references=keep)
    integration = await bed.create("imap", account.credentials())
    chat = await only_chat(bed, integration)
    await bed.engine.ctx.connectors.forget(integration["id"])  # as if restarted
    expunge(account, "INBOX", drop)
    await bed.api.post(f"/integrations/{integration['id']}/resync", json={"full": True})
    await bed.wait_imported(integration["id"])
    state = {m["externalMessageId"]: m["deletedAt"] is not None for m in await bed.messages(chat["id"])}
    assert state == {keep.strip("<>"): False, drop.strip("<>"): True}


async def test_the_accounts_own_emails_in_sent_are_outbound(bed, account):
    root = account.receive("Bob <bob@outside.test>", "Invoice 42")
    account.file_in("Sent", ("From: Me <" + account.email + ">\r\nTo: bob@outside.test\r\n"
                             "Subject: RE: Invoice 42\r\nMessage-ID: <paid@example.test>\r\n"
                             f"In-Reply-To: {root}\r\nReferences: {root}\r\n\r\nPaid.\r\n").encode())
    integration = await bed.create("imap", account.credentials())
    chat = await only_chat(bed, integration)
    directions = {m["text"].strip(): m["direction"] for m in await bed.messages(chat["id"])}
    assert directions == {"hello": "inbound", "Paid.": "outbound"}
