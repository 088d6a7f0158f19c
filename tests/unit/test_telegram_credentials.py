"""Telegram credentials: the bot token's shape, the webhook secret syncd generates or checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from syncd.engine.connectors import secret_values
from syncd.kit.loader import load_manifest
from syncd.logs import KNOWN_SECRETS, redact_secrets
from syncd.providers import connector_for

ROOT = Path(__file__).resolve().parents[2]
LOADED = load_manifest(ROOT / "mappings/telegram.yaml")
TelegramConnector = connector_for(LOADED)
TOKEN = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
Credentials = TelegramConnector.Credentials


def prepared(credentials: dict) -> dict:
    return TelegramConnector.prepare_credentials(credentials, {})[0]


def test_a_missing_secret_token_is_generated_within_telegrams_alphabet():
    first, second = prepared({"botToken": TOKEN}), prepared({"botToken": TOKEN})
    for creds in (first, second):
        assert re.fullmatch(r"[A-Za-z0-9_-]{32,256}", creds["secretToken"])
        assert Credentials.model_validate(creds).secret_token == creds["secretToken"]
    assert first["secretToken"] != second["secretToken"]


def test_a_given_secret_token_is_kept_in_either_spelling():
    assert prepared({"botToken": TOKEN, "secretToken": "mine-1"})["secretToken"] == "mine-1"
    assert prepared({"bot_token": TOKEN, "secret_token": "mine_2"}) == {"bot_token": TOKEN, "secret_token": "mine_2"}


@pytest.mark.parametrize("secret", ["has space", "dots.are.not.allowed", "x" * 257, "ünïcode"])
def test_a_given_secret_token_outside_the_pattern_is_refused_without_echoing_it(secret):
    with pytest.raises(ValidationError) as failed:
        Credentials.model_validate(prepared({"botToken": TOKEN, "secretToken": secret}))
    assert "1-256 characters" in str(failed.value)
    assert secret not in str(failed.value)


@pytest.mark.parametrize("token", ["", "xoxb-not-telegram", "123:short", "abc:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"])
def test_a_malformed_bot_token_is_refused_without_echoing_it(token):
    with pytest.raises(ValidationError) as failed:
        Credentials.model_validate(prepared({"botToken": token}))
    assert "not a Telegram bot token" in str(failed.value)
    if token:
        assert token not in str(failed.value)


def test_credentials_never_print():
    creds = Credentials.model_validate(prepared({"botToken": TOKEN}))
    assert TOKEN not in repr(creds) and creds.secret_token not in repr(creds)


def test_the_bot_token_is_masked_by_the_log_redactor_once_the_engine_knows_it():
    # The token sits in every request path; httpx logs those URLs at DEBUG. The engine
    # registers every secret credential by value when it builds the connector.
    line = f"HTTP Request: POST https://api.telegram.org/bot{TOKEN}/getUpdates"
    KNOWN_SECRETS.add(*secret_values(TelegramConnector.Credentials, prepared({"botToken": TOKEN})), owner="t-test")
    try:
        assert TOKEN not in redact_secrets(None, "debug", {"event": line})["event"]
    finally:
        KNOWN_SECRETS.forget("t-test")
