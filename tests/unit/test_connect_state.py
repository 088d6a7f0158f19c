"""The connect flow's building blocks: the signed state, signed links, URL resolution and the
OAuth app configuration (which must never print its secrets)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from syncd.api.connect import (
    StateError,
    link_signature,
    read_state,
    resolve_url,
    sign_state,
    state_key,
)
from syncd.config import Settings
from syncd.kit.connector import OAuthSpec

KEY = b"k" * 32
NOW = 1_700_000_000.0


def claims(**extra):
    return {"p": "slack", "c": "cust-1", "nonce": "n-1", "exp": int(NOW) + 600, **extra}


def test_a_signed_state_reads_back_its_claims():
    state = sign_state(KEY, claims(n="Support", s={"importChats": ["C1"]}))
    assert read_state(KEY, state, platform="slack", now=NOW) == claims(n="Support", s={"importChats": ["C1"]})


def test_a_state_with_rewritten_claims_is_refused():
    payload, _, mac = sign_state(KEY, claims()).partition(".")
    forged = base64.urlsafe_b64encode(json.dumps(claims(c="someone-else")).encode()).rstrip(b"=").decode()
    with pytest.raises(StateError, match="signature"):
        read_state(KEY, f"{forged}.{mac}", platform="slack", now=NOW)


@pytest.mark.parametrize("state", ["", "abc", "abc.def", "%%%.%%%", "é.é", "..", "e30.", "e30.AAAA"])
def test_malformed_states_are_refused(state):
    with pytest.raises(StateError):
        read_state(KEY, state, platform="slack", now=NOW)


def test_a_state_signed_with_another_key_is_refused():
    with pytest.raises(StateError, match="signature"):
        read_state(KEY, sign_state(b"x" * 32, claims()), platform="slack", now=NOW)


def test_an_expired_state_is_refused():
    state = sign_state(KEY, claims())
    with pytest.raises(StateError, match="expired"):
        read_state(KEY, state, platform="slack", now=NOW + 600)


def test_a_state_for_another_platform_is_refused():
    with pytest.raises(StateError, match="another platform"):
        read_state(KEY, sign_state(KEY, claims()), platform="gmail", now=NOW)


def test_the_state_key_is_derived_from_the_secret_key_else_the_admin_token():
    with_secret = state_key(Settings(secret_key="s3cret", admin_token="admin"))
    with_admin = state_key(Settings(admin_token="admin"))
    assert with_secret is not None and with_admin is not None and with_secret != with_admin
    # Derived, not reused: the raw secret never signs anything itself.
    assert with_secret != b"s3cret" and len(with_secret) == 32
    assert state_key(Settings()) is None


def test_the_link_signature_is_hex_hmac_of_platform_customer_and_expiry():
    expected = hmac.new(b"app-secret", b"slack:cust-1:1700000600", hashlib.sha256).hexdigest()
    assert link_signature("app-secret", "slack", "cust-1", 1700000600) == expected


def test_oauth_urls_resolve_against_their_root():
    settings = Settings(base_urls={"slack_oauth": "http://sim.local/"}, api_roots={"slack": "https://slack.com/api"})
    assert resolve_url(settings, "{slack_oauth}/oauth/v2/authorize", "slack") == (
        "http://sim.local/oauth/v2/authorize", "slack_oauth")
    assert resolve_url(settings, "/oauth.v2.access", "slack") == ("https://slack.com/api/oauth.v2.access", "slack")
    assert resolve_url(settings, "https://login.example/authorize", "x") == ("https://login.example/authorize", "x")


def test_scopes_are_space_separated_unless_the_spec_says_otherwise():
    spec = OAuthSpec(authorize_url="/a", token_url="/t", scopes=("a", "b"), base_url_key="k")
    assert spec.scope_separator == " "


# -- configuration -------------------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch):
    for name in ("SYNCD_OAUTH_CLIENTS", "SYNCD_SLACK_CLIENT_ID", "SYNCD_SLACK_CLIENT_SECRET",
                 "SYNCD_SLACK_SIGNING_SECRET", "SYNCD_GMAIL_CLIENT_ID", "SYNCD_GMAIL_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_oauth_clients_come_from_json_and_never_print(clean_env):
    clean_env.setenv("SYNCD_OAUTH_CLIENTS", json.dumps(
        {"slack": {"clientId": "123.456", "clientSecret": "very-secret", "signingSecret": "sign-secret"}}))
    settings = Settings()
    client = settings.oauth_client("slack")
    assert client.missing() == []
    assert client.client_id.get_secret_value() == "123.456"
    assert client.client_secret.get_secret_value() == "very-secret"
    assert client.credentials["signingSecret"].get_secret_value() == "sign-secret"
    for text in (repr(settings), str(settings), repr(client), str(settings.model_dump())):
        assert "very-secret" not in text and "sign-secret" not in text


def test_per_platform_variables_fill_in_what_the_json_lacks(clean_env):
    clean_env.setenv("SYNCD_SLACK_CLIENT_ID", "from-env")
    clean_env.setenv("SYNCD_SLACK_CLIENT_SECRET", "env-secret")
    clean_env.setenv("SYNCD_SLACK_SIGNING_SECRET", "env-signing")
    client = Settings(oauth_clients={"slack": {"clientId": "from-json"}}).oauth_client("slack")
    assert client.client_id.get_secret_value() == "from-json"
    assert client.client_secret.get_secret_value() == "env-secret"
    assert client.credentials["signingSecret"].get_secret_value() == "env-signing"
    assert "env-secret" not in repr(client)


def test_missing_configuration_names_the_variables_to_set(clean_env):
    assert Settings().oauth_client("gmail").missing() == ["SYNCD_GMAIL_CLIENT_ID", "SYNCD_GMAIL_CLIENT_SECRET"]
    assert Settings(oauth_clients={"gmail": {"clientId": "x"}}).oauth_client("gmail").missing() == [
        "SYNCD_GMAIL_CLIENT_SECRET"]
    hint = Settings().oauth_client("slack").env_hint("signingSecret")
    assert "SYNCD_SLACK_SIGNING_SECRET" in hint and "SYNCD_OAUTH_CLIENTS" in hint
