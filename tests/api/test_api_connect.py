"""The OAuth connect flow through the HTTP API: a browser goes to the platform's consent page
(the simulator) and comes back with a code that becomes an integration."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from syncd.api.connect import link_signature
from syncd.providers.gmail.connector import GmailConnector
from syncd.providers.slack.connector import BOT_SCOPES, SlackConnector
from syncd.testbed import APP_SECRET, BASE, GMAIL_PUSH_TOKEN, Testbed

TOPIC = "projects/myproject/topics/mytopic"
CLIENTS = {
    "slack": {"clientId": "sim-client-id", "clientSecret": "sim-client-secret", "signingSecret": "sim-signing-secret"},
    "gmail": {"clientId": "sim-client-id", "clientSecret": "sim-client-secret", "pushToken": GMAIL_PUSH_TOKEN},
}


@pytest.fixture(autouse=True)
def no_env_clients(monkeypatch):
    """Only what each test configures counts, whatever the shell running the tests exports."""
    for name in ("SYNCD_OAUTH_CLIENTS", "SYNCD_SLACK_CLIENT_ID", "SYNCD_SLACK_CLIENT_SECRET",
                 "SYNCD_SLACK_SIGNING_SECRET", "SYNCD_GMAIL_CLIENT_ID", "SYNCD_GMAIL_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def tb(make_tb):
    return await make_tb(oauth_clients=CLIENTS)


@pytest.fixture
async def anon(tb, anon_client):
    return anon_client(tb)


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def consent(sim: Any, location: str) -> str:
    """The browser at the platform's consent page; returns where it is sent back."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(sim)) as browser:
        answer = await browser.get(location)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


async def start(tb: Testbed, platform: str, **params: str) -> str:
    answer = await tb.api.get(f"/connect/{platform}", params={"customerId": "c1", **params}, follow_redirects=False)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


async def come_back(tb: Testbed, platform: str, **params: str) -> str:
    """Start, consent: the callback URL the browser is about to open."""
    return await consent(tb.sims[platform], await start(tb, platform, **params))


def assert_error(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str)
    return error


# -- the whole flow ---------------------------------------------------------------------------------
async def test_slack_connects_through_the_consent_page_and_imports(tb, anon):
    ws = tb.slack.seed_workspace()
    location = await start(tb, "slack")
    assert location.startswith("https://slack.com/oauth/v2/authorize?")
    asked = query(location)
    assert asked["client_id"] == "sim-client-id" and asked["response_type"] == "code"
    assert asked["redirect_uri"] == f"{BASE}/connect/slack/callback"
    assert asked["scope"] == ",".join(BOT_SCOPES) and asked["state"]

    back = await consent(tb.slack, location)
    assert back.startswith(f"{BASE}/connect/slack/callback?")
    answer = await anon.get(back)  # the browser carries no token: the state is the proof
    assert answer.status_code == 201, answer.text
    integration = answer.json()["integration"]
    assert (integration["platform"], integration["customerId"], integration["status"]) == ("slack", "c1", "active")
    assert integration["webhookUrl"] == f"{BASE}/webhooks/slack/{integration['id']}"
    assert "credentials" not in integration and "xoxb-" not in answer.text

    await tb.wait_imported(integration["id"])
    chats = await tb.chats(integration)
    assert {chats[ws["general"]]["name"], chats[ws["secret"]]["name"]} == {"general", "secret-plans"}
    # The configured signing secret is in the credentials: a signed delivery is accepted.
    delivery = tb.slack.post_user_message(ws["general"], "after connect", ws["alice"])
    assert (await tb.deliver_slack(integration, delivery)).status_code == 200
    await tb.settle()
    texts = [m["text"] for m in await tb.messages(chats[ws["general"]]["id"])]
    assert "after connect" in texts


async def test_gmail_connects_with_name_and_settings_and_is_watched(tb, anon):
    thread = tb.gmail.add_incoming(None, "Guilherme Dias <email@domain.com>", "Order #1001", "Where is my order?")
    location = await start(tb, "gmail", name="Support inbox", settings=json.dumps({"pubsubTopic": TOPIC}))
    assert location.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    asked = query(location)
    assert asked["scope"].split(" ") == ["https://www.googleapis.com/auth/gmail.modify", "openid", "email"]
    assert (asked["access_type"], asked["prompt"]) == ("offline", "consent")
    assert asked["redirect_uri"] == f"{BASE}/connect/gmail/callback"

    answer = await anon.get(await consent(tb.gmail, location))
    assert answer.status_code == 201, answer.text
    integration = answer.json()["integration"]
    assert (integration["name"], integration["settings"]) == ("Support inbox", {"pubsubTopic": TOPIC})
    await tb.wait_imported(integration["id"])
    assert thread in await tb.chats(integration)
    selves = (await tb.api.get("/user-platforms", params={"customerId": "c1"})).json()["userPlatforms"]
    assert [(u["externalEmail"], u["isSelf"]) for u in selves] == [(tb.gmail.address, True)]
    stored = await tb.daemon.store.get_credentials(integration["id"])
    assert stored["emailAddress"] == tb.gmail.address and stored["clientId"] == "sim-client-id"
    assert stored["refreshToken"] in tb.gmail.refresh_tokens and stored["pushToken"] == GMAIL_PUSH_TOKEN
    for _ in range(200):  # the watch is kept by the maintenance task the creation started
        if tb.gmail.watches:
            break
        await tb.settle()
    assert [w["topicName"] for w in tb.gmail.watches] == [TOPIC]
    assert (await tb.push_gmail(integration)).status_code == 200  # pushToken from the client configuration


async def test_a_signed_link_lets_the_customer_start_without_the_admin_token(tb, anon):
    expires = int(time.time()) + 300
    signature = link_signature(APP_SECRET, "slack", "c1", expires)
    answer = await anon.get("/connect/slack", params={"customerId": "c1", "expires": expires,
                                                      "signature": signature, "name": "Team"})
    assert answer.status_code == 302
    done = await anon.get(await consent(tb.slack, answer.headers["location"]))
    assert done.status_code == 201 and done.json()["integration"]["name"] == "Team"


async def test_success_can_redirect_the_browser_to_the_app(make_tb, anon_client):
    tb = await make_tb(oauth_clients=CLIENTS, connect_success_url="https://app.example/done?from=syncd")
    answer = await anon_client(tb).get(await come_back(tb, "slack"))
    assert answer.status_code == 302
    integration_id = query(answer.headers["location"])["integrationId"]
    assert answer.headers["location"] == f"https://app.example/done?from=syncd&integrationId={integration_id}"
    assert (await tb.api.get(f"/integrations/{integration_id}")).json()["integration"]["customerId"] == "c1"


# -- who may start ------------------------------------------------------------------------------------
async def test_starting_needs_the_admin_token_or_a_signed_link(tb, anon):
    assert_error(await anon.get("/connect/slack", params={"customerId": "c1"}), 401, "unauthorized")
    wrong = await anon.get("/connect/slack", params={"customerId": "c1"}, headers={"authorization": "Bearer nope"})
    assert_error(wrong, 401, "unauthorized")


@pytest.mark.parametrize(("customer", "platform", "offset"), [
    ("c2", "slack", 300),      # signed for c1, used for c2
    ("c1", "gmail", 300),      # signed for slack, used for gmail
])
async def test_a_link_signed_for_something_else_is_refused(tb, anon, customer, platform, offset):
    expires = int(time.time()) + offset
    signature = link_signature(APP_SECRET, "slack", "c1", expires)
    params = {"customerId": customer, "expires": expires, "signature": signature}
    assert_error(await anon.get(f"/connect/{platform}", params=params), 401, "bad_signature")


async def test_a_tampered_expiry_or_a_wrong_secret_is_refused(tb, anon):
    expires = int(time.time()) + 300
    good = link_signature(APP_SECRET, "slack", "c1", expires)
    later = {"customerId": "c1", "expires": expires + 3600, "signature": good}
    assert_error(await anon.get("/connect/slack", params=later), 401, "bad_signature")
    forged = {"customerId": "c1", "expires": expires, "signature": link_signature("guess", "slack", "c1", expires)}
    assert_error(await anon.get("/connect/slack", params=forged), 401, "bad_signature")
    assert_error(await anon.get("/connect/slack", params={"customerId": "c1", "signature": good}), 401, "bad_signature")


async def test_an_expired_link_is_refused(tb, anon):
    expires = int(time.time()) - 1
    params = {"customerId": "c1", "expires": expires, "signature": link_signature(APP_SECRET, "slack", "c1", expires)}
    assert_error(await anon.get("/connect/slack", params=params), 401, "link_expired")


async def test_a_signed_link_cannot_carry_settings(tb, anon):
    expires = int(time.time()) + 300
    params = {"customerId": "c1", "expires": expires, "signature": link_signature(APP_SECRET, "slack", "c1", expires),
              "settings": json.dumps({"importChats": ["C1"]})}
    assert_error(await anon.get("/connect/slack", params=params), 400, "bad_request")


@pytest.mark.parametrize("settings", ["{not json", "[1, 2]"])
async def test_settings_must_be_a_json_object(tb, settings):
    answer = await tb.api.get("/connect/slack", params={"customerId": "c1", "settings": settings})
    assert_error(answer, 400, "bad_request")


# -- what cannot start ---------------------------------------------------------------------------------
async def test_an_unknown_platform_is_not_found(tb):
    assert_error(await tb.api.get("/connect/myspace", params={"customerId": "c1"}), 404, "not_found")
    assert_error(await tb.api.get("/connect/myspace/callback", params={"code": "x", "state": "y"}), 404, "not_found")


async def test_a_platform_without_oauth_is_not_found(tb, monkeypatch):
    monkeypatch.setattr(SlackConnector, "oauth", None)
    error = assert_error(await tb.api.get("/connect/slack", params={"customerId": "c1"}), 404, "not_found")
    assert "POST /integrations" in error["message"]


async def test_a_missing_oauth_app_says_which_variables_to_set(make_tb):
    tb = await make_tb(oauth_clients={"gmail": {"clientId": "only-the-id"}})
    error = assert_error(await tb.api.get("/connect/slack", params={"customerId": "c1"}), 503, "not_configured")
    assert "SYNCD_SLACK_CLIENT_ID" in error["message"] and "SYNCD_SLACK_CLIENT_SECRET" in error["message"]
    error = assert_error(await tb.api.get("/connect/gmail", params={"customerId": "c1"}), 503, "not_configured")
    assert "SYNCD_GMAIL_CLIENT_SECRET" in error["message"] and "CLIENT_ID" not in error["message"]


async def test_a_missing_signing_secret_is_reported_as_configuration(make_tb, anon_client):
    clients = {"slack": {"clientId": "sim-client-id", "clientSecret": "sim-client-secret"}}
    tb = await make_tb(oauth_clients=clients)
    error = assert_error(await anon_client(tb).get(await come_back(tb, "slack")), 503, "not_configured")
    assert "signingSecret" in error["message"] and "SYNCD_SLACK_SIGNING_SECRET" in error["message"]
    assert (await tb.api.get("/integrations")).json()["integrations"] == []


# -- the state -----------------------------------------------------------------------------------------
def rewrite_state(url: str, **changes: Any) -> str:
    """The callback URL with the state's claims rewritten (its signature kept)."""
    params = query(url)
    payload, _, mac = params["state"].partition(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, **changes}).encode()).rstrip(b"=").decode()
    return f"{BASE}/connect/slack/callback?{urlencode({**params, 'state': f'{forged}.{mac}'})}"


async def test_a_tampered_state_is_refused_and_creates_nothing(tb, anon):
    back = await come_back(tb, "slack")
    error = assert_error(await anon.get(rewrite_state(back, c="someone-else")), 400, "bad_state")
    assert "signature" in error["message"]
    assert (await tb.api.get("/integrations")).json()["integrations"] == []


async def test_an_expired_state_is_refused(tb, anon):
    back = await come_back(tb, "slack")
    tb.clock.advance(601)  # the flow took longer than ten minutes
    error = assert_error(await anon.get(back), 400, "bad_state")
    assert "expired" in error["message"]


async def test_a_used_state_cannot_be_replayed(tb, anon):
    back = await come_back(tb, "slack")
    assert (await anon.get(back)).status_code == 201
    error = assert_error(await anon.get(back), 400, "state_used")
    assert "already used" in error["message"]
    assert len((await tb.api.get("/integrations", params={"customerId": "c1"})).json()["integrations"]) == 1


async def test_a_state_used_on_another_replica_cannot_be_replayed_there(tb, anon):
    back = await come_back(tb, "slack")
    assert (await anon.get(back)).status_code == 201
    other = await tb.replica()
    async with Testbed.client(other) as replica:
        assert_error(await replica.get(back), 400, "state_used")


async def test_a_state_for_another_platform_is_refused(tb, anon):
    back = await come_back(tb, "slack")
    gmail_callback = back.replace("/connect/slack/", "/connect/gmail/")
    error = assert_error(await anon.get(gmail_callback), 400, "bad_state")
    assert "another platform" in error["message"]


async def test_a_callback_without_code_or_state_is_malformed(tb, anon):
    assert_error(await anon.get("/connect/slack/callback"), 400, "bad_request")
    assert_error(await anon.get("/connect/slack/callback", params={"code": "x"}), 400, "bad_request")


# -- the platform says no ----------------------------------------------------------------------------
@pytest.mark.parametrize("platform", ["slack", "gmail"])
async def test_a_refused_consent_is_the_platforms_error(tb, anon, platform):
    tb.sims[platform].oauth_deny = "access_denied"
    back = await come_back(tb, platform)
    error = assert_error(await anon.get(back), 400, "authorization_failed")
    assert error["details"]["platformError"] == "access_denied" and "access_denied" in error["message"]
    assert (await tb.api.get("/integrations")).json()["integrations"] == []


@pytest.mark.parametrize(("platform", "endpoint"), [("slack", "oauth.v2.access"), ("gmail", "token")])
async def test_a_failing_token_endpoint_is_a_bad_gateway(tb, anon, platform, endpoint):
    back = await come_back(tb, platform)
    tb.sims[platform].faults.fail_next(endpoint, "server_error")
    error = assert_error(await anon.get(back), 502, "token_exchange_failed")
    assert "503" in error["message"] and "sim-client-secret" not in error["message"]
    assert (await tb.api.get("/integrations")).json()["integrations"] == []


async def test_a_refused_code_is_a_bad_gateway_with_the_platforms_error(tb, anon):
    back = await come_back(tb, "slack")
    params = query(back)
    wrong_code = f"{BASE}/connect/slack/callback?{urlencode({**params, 'code': 'not-a-code'})}"
    error = assert_error(await anon.get(wrong_code), 502, "token_exchange_failed")
    assert error["details"]["platformError"] == "invalid_code"


async def test_a_wrong_client_secret_never_shows_in_the_answer(make_tb, anon_client):
    clients = {"gmail": {**CLIENTS["gmail"], "clientSecret": "operator-typo-secret"}}
    tb = await make_tb(oauth_clients=clients)
    answer = await anon_client(tb).get(await come_back(tb, "gmail"))
    error = assert_error(answer, 502, "token_exchange_failed")
    assert error["details"]["platformError"] == "invalid_client"
    assert "operator-typo-secret" not in answer.text


async def test_a_token_answer_that_cannot_make_credentials_is_a_bad_gateway(tb, anon, monkeypatch):
    # Without the openid scope Google answers no id_token, so the mailbox cannot be named.
    gmail_only = dataclasses.replace(GmailConnector.oauth, scopes=("https://www.googleapis.com/auth/gmail.modify",))
    monkeypatch.setattr(GmailConnector, "oauth", gmail_only)
    answer = await anon.get(await come_back(tb, "gmail"))
    error = assert_error(answer, 502, "token_unusable")
    assert "id_token" in error["message"] and "ya29." not in answer.text
    assert (await tb.api.get("/integrations")).json()["integrations"] == []
