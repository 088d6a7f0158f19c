"""The Gmail connector against the Gmail simulator, in-process through httpx.ASGITransport."""

from __future__ import annotations

import email.utils
import json
from pathlib import Path

import httpx
import pytest

from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import (
    AuthError,
    CursorExpired,
    PermanentError,
    RateLimited,
    TransientError,
)
from syncd.kit.http import RetryPolicy
from syncd.mapping import load_mapping, mappings_dir
from syncd.providers.gmail.connector import GmailConnector, GmailCredentials
from syncd.providers.gmail.sim import GmailSimulator
from syncd.universal import ChatData, OutgoingMessage

FIXTURES = json.loads((Path(__file__).parents[1] / "fixtures" / "gmail.json").read_text())
ME = "me@example.com"
TOKEN = "ya29.initial-token"


class Sleeps(list):
    """A fake ``sleep`` that records how long the retry policy wanted to wait."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sim() -> GmailSimulator:
    return GmailSimulator(ME, token=TOKEN, refresh_token="1//refresh", client_id="cid", client_secret="csecret")


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def connector_for(app, sleeps: Sleeps, *, max_retries: int = 3, **creds) -> GmailConnector:
    credentials = GmailCredentials.model_validate(
        {"accessToken": TOKEN, "emailAddress": ME, "refreshToken": "1//refresh", "clientId": "cid",
         "clientSecret": "csecret", **creds}
    )
    transport = app if isinstance(app, httpx.AsyncBaseTransport) else httpx.ASGITransport(app=app)
    http = GmailConnector.make_http(
        "http://gmail.sim", credentials, policy=RetryPolicy(max_retries=max_retries, sleep=sleeps),
        timeout_s=5, transport=transport,
    )
    ctx = ConnectorContext(http=http, mapping=load_mapping(mappings_dir() / "gmail.yaml"),
                           webhook_url="https://syncd.example/webhooks/gmail/int-1")
    return GmailConnector(credentials, {}, ctx)


@pytest.fixture
async def gmail(sim, sleeps):
    connector = connector_for(sim, sleeps)
    yield connector
    await connector.close()


def seed(sim: GmailSimulator) -> tuple[str, str]:
    report = sim.add_incoming(None, "Guilherme Dias <Guilherme@Domain.com>", "Quarterly report", "Numbers attached.",
                              "<p>Numbers attached.</p>", to=f"{ME}, Ana <ana@example.org>",
                              attachments=[("q3.pdf", "application/pdf", b"%PDF-1.4 fake")])
    sim.add_incoming(report, "Ana <ana@example.org>", "Re: Quarterly report", "Looks good.")
    lunch = sim.add_incoming(None, "bob@example.net", "Lunch?", "Noon at the usual place?")
    return report, lunch


async def test_identify_returns_the_account_lowercased(gmail):
    [user] = await gmail.identify()
    assert (user.external_user_id, user.external_email, user.is_self) == (ME, ME, True)


async def test_list_chats_names_threads_by_subject_across_pages(gmail, sim):
    report, lunch = seed(sim)
    gmail.page_size = 1  # forces one threads.list page per thread
    chats = {c.external_chat_id: c for c in await gmail.list_chats()}
    assert chats[report].name == "Quarterly report"
    assert chats[lunch].name == "Lunch?"
    assert {c.kind for c in chats.values()} == {"email_thread"}
    assert set(chats[report].participants) == {"guilherme@domain.com", ME, "ana@example.org"}
    assert sim.faults.calls["threads.list"] == 2


async def test_thread_history_decodes_bodies_senders_and_attachments(gmail, sim):
    report, _ = seed(sim)
    page = await gmail.fetch_history_page(ChatData(external_chat_id=report), None)
    assert page.next_cursor is None
    first, second = page.messages
    assert first.external_chat_id == report and first.external_message_id == sim.truth(report)[0]["id"]
    assert (first.sender.email, first.sender.name) == ("guilherme@domain.com", "Guilherme Dias")
    assert first.text.strip() == "Numbers attached." and first.html.strip() == "<p>Numbers attached.</p>"
    assert [(a.name, a.mime_type, a.size) for a in first.attachments] == [("q3.pdf", "application/pdf", 13)]
    assert first.subject == "Quarterly report" and first.sent_at is not None and not first.from_self
    assert second.extra["inReplyTo"] == first.extra["rfcMessageId"]
    assert second.sender.name == "Ana" and second.text.strip() == "Looks good."


async def test_a_reply_is_threaded_with_headers_gmail_needs(gmail, sim):
    report, _ = seed(sim)
    chat = next(c for c in await gmail.list_chats() if c.external_chat_id == report)
    last = (await gmail.fetch_history_page(chat, None)).messages[-1]
    result = await gmail.send(OutgoingMessage(chat=chat, text="Thanks both.", html="<b>Thanks both.</b>", reply_to=last))

    sent = sim.truth(report)[-1]
    assert (result.external_message_id, result.external_thread_id) == (sent["id"], report)
    assert sent["subject"] == "Re: Quarterly report" and "SENT" in sent["labelIds"]
    assert sent["inReplyTo"] == last.extra["rfcMessageId"]
    assert sent["references"].split() == [*last.extra["references"].split(), last.extra["rfcMessageId"]]
    assert sorted(a for _, a in email.utils.getaddresses([sent["to"]])) == ["ana@example.org", "guilherme@domain.com"]
    assert sent["from"] == ME and sent["text"].strip() == "Thanks both." and "<b>Thanks both.</b>" in sent["html"]
    assert result.extra["rfcMessageId"] == sent["messageId"]


async def test_a_subject_already_prefixed_is_not_prefixed_again(gmail, sim):
    _, lunch = seed(sim)
    chat = ChatData(external_chat_id=lunch, name="Lunch?", kind="email_thread", participants=["bob@example.net", ME])
    await gmail.send(OutgoingMessage(chat=chat, text="Yes", subject="RE: Lunch?"))
    sent = sim.truth(lunch)[-1]
    assert sent["subject"] == "RE: Lunch?" and sent["to"] == "bob@example.net"


async def test_delete_moves_the_message_to_trash(gmail, sim):
    _, lunch = seed(sim)
    message_id = sim.truth(lunch)[0]["id"]
    await gmail.delete(OutgoingMessage(chat=ChatData(external_chat_id=lunch), external_message_id=message_id))
    assert sim.truth(lunch)[0]["trashed"]
    page = await gmail.fetch_history_page(ChatData(external_chat_id=lunch), None)
    assert page.messages[0].deleted_at is not None


async def test_poll_starts_from_now_then_picks_up_new_mail_trash_and_new_threads(gmail, sim):
    report, lunch = seed(sim)
    first = await gmail.poll(None, [], 300)
    assert first.changes.messages == [] and first.state == {"historyId": str(sim.mailboxes[ME].history_id)}

    reply = sim.add_incoming(report, "Guilherme Dias <guilherme@domain.com>", "Re: Quarterly report", "One more.")
    sim.trash(sim.truth(lunch)[0]["id"])
    fresh = sim.add_incoming(None, "carol@example.com", "New project", "Kick-off tomorrow.")
    known = [ChatData(external_chat_id=report), ChatData(external_chat_id=lunch)]
    result = await gmail.poll(first.state, known, 300)

    by_id = {m.external_message_id: m for m in result.changes.messages}
    assert by_id[reply].text.strip() == "One more." and by_id[reply].deleted_at is None
    assert by_id[sim.truth(lunch)[0]["id"]].deleted_at is not None
    assert by_id[fresh].external_chat_id == fresh
    assert [(c.external_chat_id, c.name) for c in result.changes.chats] == [(fresh, "New project")]
    assert result.state == {"historyId": str(sim.mailboxes[ME].history_id)}

    again = await gmail.poll(result.state, known, 300)
    assert again.changes.messages == [] and again.state == result.state


async def test_poll_reports_a_permanent_deletion_by_ids(gmail, sim):
    _, lunch = seed(sim)
    state = (await gmail.poll(None, [], 0)).state
    message_id = sim.truth(lunch)[0]["id"]
    sim.delete(message_id)
    [gone] = (await gmail.poll(state, [ChatData(external_chat_id=lunch)], 0)).changes.messages
    assert (gone.external_chat_id, gone.external_message_id) == (lunch, message_id)
    assert gone.deleted_at is not None


async def test_an_expired_history_mark_raises_cursor_expired(gmail, sim):
    seed(sim)
    state = (await gmail.poll(None, [], 0)).state
    sim.add_incoming(None, "x@example.com", "Later", "text")
    sim.expire_history()
    with pytest.raises(CursorExpired):
        await gmail.poll(state, [], 0)


async def test_a_429_is_waited_out_for_its_retry_after(gmail, sim, sleeps):
    seed(sim)
    sim.faults.fail_next("threads.list", "rate_limit", retry_after_s=7)
    assert len(await gmail.list_chats()) == 2
    assert sleeps == [7]


async def test_a_403_user_rate_limit_is_a_rate_limit(sim, sleeps):
    sim.faults.fail_next("profile", "rate_limit", status=403, times=5, retry_after_s=2)
    gmail = connector_for(sim, sleeps, max_retries=1)
    with pytest.raises(RateLimited) as caught:
        await gmail.identify()
    assert caught.value.status == 403 and caught.value.code == "userRateLimitExceeded"
    assert sleeps == [2]
    await gmail.close()


async def test_server_errors_become_transient_once_retries_are_spent(sim, sleeps):
    sim.faults.fail_next("profile", "server_error", times=5)
    gmail = connector_for(sim, sleeps, max_retries=2)
    with pytest.raises(TransientError):
        await gmail.identify()
    assert sim.faults.calls["profile"] == 3
    await gmail.close()


async def test_an_expired_token_is_refreshed_once_and_the_call_retried(gmail, sim):
    sim.expire_token(TOKEN)
    [user] = await gmail.identify()
    assert user.external_user_id == ME
    new_token = gmail.refreshed_credentials["accessToken"]
    assert new_token != TOKEN and sim.tokens[new_token] == ME
    assert sim.faults.calls["token"] == 1 and sim.faults.calls["profile"] == 2
    await gmail.identify()  # the new token stays in use
    assert sim.faults.calls["token"] == 1


async def test_a_rejected_refresh_is_an_auth_error_without_secrets(sim, sleeps):
    sim.expire_token(TOKEN)
    gmail = connector_for(sim, sleeps, refreshToken="1//revoked")
    with pytest.raises(AuthError) as caught:
        await gmail.identify()
    assert "invalid_grant" in str(caught.value)
    assert not any(s in str(caught.value) for s in (TOKEN, "1//revoked", "csecret"))
    assert gmail.refreshed_credentials is None
    await gmail.close()


async def test_without_refresh_credentials_a_401_is_an_auth_error(sim, sleeps):
    sim.expire_token(TOKEN)
    gmail = connector_for(sim, sleeps, refreshToken=None)
    with pytest.raises(AuthError):
        await gmail.identify()
    assert sim.faults.calls["token"] == 0
    await gmail.close()


async def test_a_client_error_carries_googles_message():
    sample = FIXTURES["error_envelope"]
    transport = httpx.MockTransport(lambda request: httpx.Response(sample["http_status"], json=sample["payload"]))
    gmail = connector_for(transport, Sleeps())
    with pytest.raises(PermanentError) as caught:
        await gmail.list_chats()
    assert caught.value.status == 400 and caught.value.code == "badRequest"
    assert "Sorting is not supported for queries with fullText terms" in str(caught.value)
    await gmail.close()


def test_credentials_need_a_real_email_address():
    with pytest.raises(ValueError, match="email address"):
        GmailCredentials.model_validate({"accessToken": "t", "emailAddress": "not-an-address"})
    assert "secret-token" not in repr(GmailCredentials(access_token="secret-token", email_address=ME))
