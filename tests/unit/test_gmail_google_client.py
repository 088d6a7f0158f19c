"""The official google-api-python-client, offline with its bundled discovery document, against
the Gmail simulator served over real HTTP: if the official client rejects an answer, the
simulator is wrong."""

from __future__ import annotations

import base64
import json
from email.message import EmailMessage

import pytest

pytest.importorskip("googleapiclient")

from google.auth.exceptions import RefreshError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from syncd.providers.gmail.sim import GmailSimulator
from syncd.providers.mime import decode_payload
from syncd.sim.base import ServerThread

ME = "me@example.com"
TOKEN = "ya29.official-client"


@pytest.fixture(scope="module")
def sim() -> GmailSimulator:
    sim = GmailSimulator(ME, token=TOKEN)
    for n in range(5):
        sim.add_incoming(None, f"Sender {n} <sender{n}@example.org>", f"Subject {n}", f"Body {n}", f"<p>Body {n}</p>")
    return sim


@pytest.fixture(scope="module")
def server(sim):
    with ServerThread(sim) as running:
        yield running


def gmail(server, token: str = TOKEN):
    return build("gmail", "v1", credentials=Credentials(token=token), static_discovery=True,
                 client_options={"api_endpoint": server.url + "/"}, cache_discovery=False)


def test_threads_list_pages_with_the_clients_own_list_next(sim, server):
    threads = gmail(server).users().threads()
    request, seen, pages = threads.list(userId="me", maxResults=2), [], 0
    while request is not None:
        response = request.execute()
        seen += [t["id"] for t in response.get("threads", [])]
        pages += 1
        request = threads.list_next(request, response)
    assert pages == 3
    assert sorted(seen) == sorted(sim.mailboxes[ME].threads) and len(seen) == len(set(seen))


def test_a_fetched_thread_is_a_gmail_thread_resource(sim, server):
    thread_id = list(sim.mailboxes[ME].threads)[4]
    thread = gmail(server).users().threads().get(userId="me", id=thread_id, format="full").execute()
    [message] = thread["messages"]
    assert (thread["id"], message["threadId"]) == (thread_id, thread_id)
    assert message["labelIds"] == ["INBOX", "UNREAD"] and message["internalDate"].isdigit()
    headers = {h["name"]: h["value"] for h in message["payload"]["headers"]}
    assert headers["Subject"] == "Subject 4" and headers["From"] == "Sender 4 <sender4@example.org>"
    body = decode_payload(message["payload"])
    assert (body.text.strip(), body.html.strip()) == ("Body 4", "<p>Body 4</p>")

    metadata = gmail(server).users().threads().get(
        userId="me", id=thread_id, format="metadata", metadataHeaders=["Subject"]).execute()
    assert metadata["messages"][0]["payload"]["headers"] == [{"name": "Subject", "value": "Subject 4"}]


def test_a_reply_sent_through_the_client_joins_the_thread_and_history(sim, server):
    thread_id = next(iter(sim.mailboxes[ME].threads))
    start = sim.mailboxes[ME].history_id
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = ME, "sender0@example.org", "Re: Subject 0"
    mail.set_content("Thanks")
    raw = base64.urlsafe_b64encode(mail.as_bytes()).decode()
    sent = gmail(server).users().messages().send(userId="me", body={"raw": raw, "threadId": thread_id}).execute()
    assert sent["threadId"] == thread_id and sent["labelIds"] == ["SENT"]

    history = gmail(server).users().history().list(
        userId="me", startHistoryId=str(start), historyTypes=["messageAdded"]).execute()
    [record] = history["history"]
    assert record["messagesAdded"][0]["message"]["id"] == sent["id"]
    assert history["historyId"] == str(sim.mailboxes[ME].history_id)


def test_errors_reach_the_client_in_googles_envelope(sim, server):
    with pytest.raises(HttpError) as missing:
        gmail(server).users().threads().get(userId="me", id="does-not-exist").execute()
    assert missing.value.resp.status == 404
    assert json.loads(missing.value.content)["error"]["errors"][0]["reason"] == "notFound"



def test_google_auth_refreshes_an_expired_token_at_the_simulators_token_endpoint(sim, server):
    sim.tokens["ya29.expired"] = ME
    sim.expire_token("ya29.expired")
    credentials = Credentials(token="ya29.expired", refresh_token="sim-refresh-token", token_uri=f"{server.url}/token",
                              client_id="sim-client-id", client_secret="sim-client-secret")
    service = build("gmail", "v1", credentials=credentials, static_discovery=True,
                    client_options={"api_endpoint": server.url + "/"}, cache_discovery=False)
    assert service.users().getProfile(userId="me").execute()["emailAddress"] == ME
    assert credentials.token != "ya29.expired" and sim.tokens[credentials.token] == ME

    credentials = Credentials(token="ya29.expired", refresh_token="revoked", token_uri=f"{server.url}/token",
                              client_id="sim-client-id", client_secret="sim-client-secret")
    service = build("gmail", "v1", credentials=credentials, static_discovery=True,
                    client_options={"api_endpoint": server.url + "/"}, cache_discovery=False)
    with pytest.raises(RefreshError, match="invalid_grant"):
        service.users().getProfile(userId="me").execute()
