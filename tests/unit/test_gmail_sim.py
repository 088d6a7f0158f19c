"""The Gmail simulator behaves like Gmail where syncd depends on it."""

from __future__ import annotations

import base64
import email
import email.policy
import json
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from syncd.providers.gmail.sim import GmailSimulator
from syncd.sim.base import FaultPlan, Faults

FIXTURES = json.loads((Path(__file__).parents[1] / "fixtures" / "gmail.json").read_text())
ME = "me@example.com"
API = "/gmail/v1/users/me"


@pytest.fixture
def sim() -> GmailSimulator:
    return GmailSimulator(ME, token="tok", history_retention=3)


@pytest.fixture
async def api(sim):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://gmail.sim",
                                 headers={"authorization": "Bearer tok"}) as client:
        yield client


def raw(subject: str, to: str = "bob@example.net") -> str:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = ME, to, subject
    mail.set_content("hi")
    return base64.urlsafe_b64encode(mail.as_bytes()).decode()


async def test_a_send_with_a_different_subject_starts_a_new_thread_as_gmail_does(sim, api):
    thread = sim.add_incoming(None, "bob@example.net", "Lunch?", "Noon?")
    same = (await api.post(f"{API}/messages/send", json={"raw": raw("Re: Lunch?"), "threadId": thread})).json()
    other = (await api.post(f"{API}/messages/send", json={"raw": raw("Dinner"), "threadId": thread})).json()
    assert same["threadId"] == thread and other["threadId"] == other["id"] != thread


async def test_history_older_than_the_retained_window_is_404_in_googles_envelope(sim, api):
    start = sim.mailboxes[ME].history_id
    for n in range(4):
        sim.add_incoming(None, "a@example.org", f"s{n}", "x")
    answer = await api.get(f"{API}/history", params={"startHistoryId": start})
    assert answer.status_code == 404
    assert set(answer.json()["error"]) == set(FIXTURES["error_envelope"]["payload"]["error"]) | {"status"}
    latest = await api.get(f"{API}/history", params={"startHistoryId": start + 1, "maxResults": 2})
    assert len(latest.json()["history"]) == 2 and latest.json()["nextPageToken"]


async def test_raw_format_round_trips_the_stored_rfc2822_message(sim, api):
    message_id = sim.add_incoming(None, "Ana <ana@example.org>", "Olá", "Até já", charset="iso-8859-1")
    got = (await api.get(f"{API}/messages/{message_id}", params={"format": "raw"})).json()
    mail = email.message_from_bytes(base64.urlsafe_b64decode(got["raw"]), policy=email.policy.default)
    assert mail["Subject"] == "Olá" and mail.get_content().strip() == "Até já"
    listed = (await api.get(f"{API}/messages")).json()
    assert listed["messages"] == [{"id": message_id, "threadId": message_id}] and listed["resultSizeEstimate"] == 1


async def test_faults_answer_like_google_with_retry_after():
    sim = GmailSimulator(ME, token="tok", faults=Faults(FaultPlan(rate_limit_every=2, retry_after_s=3)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://s",
                                 headers={"authorization": "Bearer tok"}) as client:
        ok, limited = [await client.get(f"{API}/profile") for _ in range(2)]
    assert ok.status_code == 200 and limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert limited.json()["error"]["errors"][0]["reason"] == "rateLimitExceeded"


async def test_another_users_mailbox_is_denied(api):
    assert (await api.get("/gmail/v1/users/someone@else.com/profile")).status_code == 403
    assert (await api.get(f"/gmail/v1/users/{ME.upper()}/profile")).status_code == 200


async def test_the_token_endpoint_speaks_oauth(api):
    good = {"grant_type": "refresh_token", "refresh_token": "sim-refresh-token",
            "client_id": "sim-client-id", "client_secret": "sim-client-secret"}
    answer = await api.post("/token", data=good)
    assert answer.status_code == 200 and answer.json()["expires_in"] > 0
    assert (await api.post("/token", data={**good, "refresh_token": "nope"})).json()["error"] == "invalid_grant"
    assert (await api.post("/token", data={**good, "client_secret": "nope"})).status_code == 401


async def test_watch_answers_a_history_id_and_a_week_of_expiry(sim, api):
    shape = FIXTURES["watch"]["payload"]
    answer = (await api.post(f"{API}/watch", json=shape["request"])).json()
    assert set(answer) == set(shape["response"]) and answer["historyId"] == str(sim.mailboxes[ME].history_id)
    assert (await api.post(f"{API}/watch", json={})).status_code == 400
