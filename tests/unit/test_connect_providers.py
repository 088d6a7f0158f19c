"""The Slack and Gmail ends of the connect flow: their OAuth specs, the credentials they make
from a token answer, and the simulators' consent pages and token endpoints."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from syncd.kit.loader import load_manifest
from syncd.mapping import mappings_dir
from syncd.providers import connector_for
from syncd.providers.gmail.connector import (
    GmailConnector,
    GmailCredentials,
    id_token_claims,
)
from syncd.providers.gmail.sim import GmailSimulator
from syncd.providers.slack.connector import SlackConnector
from syncd.providers.slack.sim import SlackSimulator

CALLBACK = "https://syncd.example/connect/{}/callback"
#: Slack's credentials model, generated from its manifest.
SlackCredentials = connector_for(load_manifest(mappings_dir() / "slack.yaml")).Credentials

#: The example answer of https://docs.slack.dev/reference/methods/oauth.v2.access
SLACK_ACCESS_EXAMPLE = {
    "ok": True, "access_token": "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy", "token_type": "bot",
    "scope": "commands,incoming-webhook", "bot_user_id": "U0KRQLJ9H", "app_id": "A0KRD7HC3",
    "team": {"name": "Slack Softball Team", "id": "T9TK3CUKW"},
    "enterprise": {"name": "slack-sports", "id": "E12345678"},
    "authed_user": {"id": "U1234", "scope": "chat:write", "access_token": "xoxp-1234", "token_type": "user"},
}


def jwt(claims: dict) -> str:
    enc = [base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=").decode() for p in ({"alg": "RS256"}, claims)]
    return ".".join([*enc, "c2ln"])


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# -- specs and credentials -------------------------------------------------------------------------
def test_slack_asks_for_its_bot_scopes_comma_separated_on_the_consent_root():
    spec = SlackConnector.oauth
    assert spec.authorize_url == "{slack_oauth}/oauth/v2/authorize" and spec.scope_separator == ","
    assert spec.base_url_key == "slack" and spec.token_url == "/oauth.v2.access"
    assert {"channels:history", "groups:history", "im:history", "mpim:history", "chat:write"} <= set(spec.scopes)


def test_slack_credentials_take_the_bot_token_of_the_documented_answer():
    made = SlackConnector.credentials_from_oauth(SLACK_ACCESS_EXAMPLE, client_id="id", client_secret="secret")
    assert made == {"botToken": "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"}
    # The signing secret is the app's, added by the flow from configuration.
    SlackCredentials.model_validate({**made, "signingSecret": "s"})


def test_slack_without_a_bot_token_cannot_make_credentials():
    user_only = {**SLACK_ACCESS_EXAMPLE, "access_token": None}
    with pytest.raises(ValueError, match="bot token"):
        SlackConnector.credentials_from_oauth(user_only, client_id="id", client_secret="secret")


def test_gmail_asks_for_offline_access_and_an_id_token():
    spec = GmailConnector.oauth
    assert spec.authorize_url == "{google_accounts}/o/oauth2/v2/auth" and spec.scope_separator == " "
    assert (spec.base_url_key, spec.token_url) == ("google_oauth", "/token")
    assert {"openid", "email", "https://www.googleapis.com/auth/gmail.modify"} <= set(spec.scopes)
    assert ("access_type", "offline") in spec.authorize_params and ("prompt", "consent") in spec.authorize_params


def test_gmail_credentials_name_the_mailbox_from_the_id_token():
    token = {"access_token": "ya29.a", "refresh_token": "1//r", "expires_in": 3599, "token_type": "Bearer",
             "id_token": jwt({"aud": "cid", "email": "me@example.com", "email_verified": True})}
    made = GmailConnector.credentials_from_oauth(token, client_id="cid", client_secret="csecret")
    assert made == {"accessToken": "ya29.a", "refreshToken": "1//r", "clientId": "cid", "clientSecret": "csecret",
                    "emailAddress": "me@example.com"}
    GmailCredentials.model_validate(made)


@pytest.mark.parametrize(("token", "problem"), [
    ({"access_token": "ya29.a"}, "id_token"),
    ({"access_token": "ya29.a", "id_token": "not-a-jwt"}, "JWT"),
    ({"access_token": "ya29.a", "id_token": jwt({"aud": "other", "email": "me@example.com"})}, "another OAuth client"),
    ({"access_token": "ya29.a", "id_token": jwt({"aud": "cid", "email": "me@x.com", "email_verified": False})},
     "verified email"),
    ({"id_token": jwt({"aud": "cid", "email": "me@example.com"})}, "access_token"),
])
def test_gmail_refuses_token_answers_that_cannot_make_credentials(token, problem):
    with pytest.raises(ValueError, match=problem):
        GmailConnector.credentials_from_oauth(token, client_id="cid", client_secret="csecret")


def test_id_token_claims_are_read_without_padding():
    assert id_token_claims(jwt({"email": "a@b.co"}))["email"] == "a@b.co"


# -- the simulators' OAuth endpoints ----------------------------------------------------------------
async def test_the_slack_consent_page_hands_out_a_code_that_buys_one_bot_token():
    sim = SlackSimulator()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(sim), base_url="https://slack.com") as http:
        consent = await http.get("/oauth/v2/authorize", params={
            "client_id": "sim-client-id", "scope": "chat:write,channels:history", "state": "st",
            "redirect_uri": CALLBACK.format("slack")})
        assert consent.status_code == 302
        back = query(consent.headers["location"])
        assert consent.headers["location"].startswith(CALLBACK.format("slack") + "?") and back["state"] == "st"
        form = {"code": back["code"], "client_id": "sim-client-id", "client_secret": "sim-client-secret",
                "redirect_uri": CALLBACK.format("slack")}
        answer = (await http.post("/api/oauth.v2.access", data=form)).json()
        assert answer["ok"] is True and answer["token_type"] == "bot"
        assert answer["scope"] == "chat:write,channels:history"
        assert answer["team"]["id"] == sim.team_id and answer["bot_user_id"] == sim.bot_user_id
        assert set(SLACK_ACCESS_EXAMPLE) <= set(answer)  # every documented field is there
        auth = await http.post("/api/auth.test", headers={"authorization": f"Bearer {answer['access_token']}"})
        assert auth.json()["ok"] is True
        again = (await http.post("/api/oauth.v2.access", data=form)).json()
        assert again == {"ok": False, "error": "invalid_code"}


async def test_the_slack_token_endpoint_takes_client_credentials_by_basic_auth_too():
    sim = SlackSimulator()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(sim), base_url="https://slack.com") as http:
        consent = await http.get("/oauth/v2/authorize", params={
            "client_id": "sim-client-id", "scope": "chat:write", "redirect_uri": CALLBACK.format("slack")})
        code = query(consent.headers["location"])["code"]
        basic = base64.b64encode(b"sim-client-id:sim-client-secret").decode()
        answer = await http.post("/api/oauth.v2.access", data={"code": code},
                                 headers={"authorization": f"Basic {basic}"})
        assert answer.json()["ok"] is True


async def test_the_slack_token_endpoint_checks_the_client_and_the_consent_page_can_refuse():
    sim = SlackSimulator()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(sim), base_url="https://slack.com") as http:
        assert (await http.get("/oauth/v2/authorize", params={"client_id": "nope"})).status_code == 400
        wrong = await http.post("/api/oauth.v2.access", data={"code": "x", "client_id": "sim-client-id",
                                                               "client_secret": "wrong"})
        assert wrong.json() == {"ok": False, "error": "bad_client_secret"}
        sim.oauth_deny = "access_denied"
        denied = await http.get("/oauth/v2/authorize", params={
            "client_id": "sim-client-id", "state": "st", "redirect_uri": CALLBACK.format("slack")})
        assert query(denied.headers["location"]) == {"error": "access_denied", "state": "st"}


async def test_the_google_consent_page_and_token_endpoint_make_a_refreshable_mailbox_token():
    sim = GmailSimulator("owner@example.com")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(sim)) as http:
        consent = await http.get("https://accounts.google.com/o/oauth2/v2/auth", params={
            "client_id": "sim-client-id", "redirect_uri": CALLBACK.format("gmail"), "response_type": "code",
            "scope": "https://www.googleapis.com/auth/gmail.modify openid email", "access_type": "offline",
            "state": "st"})
        assert consent.status_code == 302
        back = query(consent.headers["location"])
        assert back["state"] == "st" and "https://www.googleapis.com/auth/userinfo.email" in back["scope"]
        form = {"grant_type": "authorization_code", "code": back["code"], "redirect_uri": CALLBACK.format("gmail"),
                "client_id": "sim-client-id", "client_secret": "sim-client-secret"}
        token = (await http.post("https://oauth2.googleapis.com/token", data=form)).json()
        assert token["token_type"] == "Bearer" and token["expires_in"] == 3599 and token["refresh_token"]
        assert id_token_claims(token["id_token"])["email"] == "owner@example.com"
        profile = await http.get("https://gmail.googleapis.com/gmail/v1/users/me/profile",
                                 headers={"authorization": f"Bearer {token['access_token']}"})
        assert profile.json()["emailAddress"] == "owner@example.com"
        again = await http.post("https://oauth2.googleapis.com/token", data=form)
        assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
        refreshed = await http.post("https://oauth2.googleapis.com/token", data={
            "grant_type": "refresh_token", "refresh_token": token["refresh_token"],
            "client_id": "sim-client-id", "client_secret": "sim-client-secret"})
        assert refreshed.status_code == 200


async def test_the_google_consent_page_refuses_unknown_clients_and_can_be_denied():
    sim = GmailSimulator()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(sim), base_url="https://accounts.google.com") as http:
        assert (await http.get("/o/oauth2/v2/auth", params={"client_id": "nope"})).status_code == 401
        sim.oauth_deny = "access_denied"
        denied = await http.get("/o/oauth2/v2/auth", params={
            "client_id": "sim-client-id", "redirect_uri": CALLBACK.format("gmail"), "response_type": "code",
            "scope": "openid", "state": "st"})
        assert query(denied.headers["location"]) == {"error": "access_denied", "state": "st"}
