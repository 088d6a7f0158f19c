"""Logging: JSON lines with bound context, and no secret ever reaches the output."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from syncd.logs import (
    KNOWN_SECRETS,
    REDACTED,
    SecretValues,
    bind,
    bound,
    configure_logging,
    redact_secrets,
    unbind,
)

# Real signature headers and secrets from the platforms' documentation (see
# tests/fixtures/*.json for the documented vectors).
SLACK_VECTOR = {
    "secret": "8f742231b10e8888abcd99yyyzzz85a5",
    "headers": {
        "X-Slack-Request-Timestamp": "1531420618",
        "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
    },
    "source": "github:slackapi/python-slack-sdk@ae87985e2c3811ead978f31ea5a1e4a7ca5c3515:"
    "tests/signature/test_signature_verifier.py",
}
META_SIGNATURE = {
    "secret": "It's a Secret to Everybody",
    "headers": {
        "X-Hub-Signature-256": (
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        )
    },
    "source": "https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries",
}
TELEGRAM_SECRET_HEADER = {
    "headers": {"X-Telegram-Bot-Api-Secret-Token": "my-Secret_token-123"},
    "source": "https://core.telegram.org/bots/api#setwebhook",
}
# The bot token format shown in Telegram's Bot API documentation.
TELEGRAM_BOT_TOKEN = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"


TOUCHED_LOGGERS = (
    "",
    "httpx",
    "httpcore",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
)


@pytest.fixture
def log_lines(capsys):
    """Configure JSON logging into captured stderr; yields a reader of the emitted events."""
    # configure_logging changes process-wide state; put it all back for the other tests.
    touched = [logging.getLogger(name) for name in TOUCHED_LOGGERS]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in touched]
    configure_logging("INFO", "json")

    def read() -> list[dict]:
        err = capsys.readouterr().err
        return [json.loads(line) for line in err.splitlines() if line.strip()]

    yield read
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    for lg, handlers, level, propagate, disabled in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


def test_a_json_line_carries_level_utc_timestamp_logger_and_bound_context(log_lines):
    log = structlog.get_logger("syncd.engine.importer")
    with bound(integration_id="int-1", platform="slack"):
        log.info("import.page", chat_id="C024BE91L", messages=3)
    log.info("after")

    first, second = log_lines()
    assert first["event"] == "import.page"
    assert first["level"] == "info"
    assert first["logger"] == "syncd.engine.importer"
    assert first["timestamp"].endswith("Z")
    assert first["integration_id"] == "int-1" and first["platform"] == "slack"
    assert first["chat_id"] == "C024BE91L" and first["messages"] == 3
    assert "integration_id" not in second, "bound context ends with the with-block"


def test_bind_keeps_context_until_unbound(log_lines):
    log = structlog.get_logger("syncd.test")
    bind(chat_id="chat-9")
    log.info("one")
    unbind("chat_id")
    log.info("two")
    one, two = log_lines()
    assert one["chat_id"] == "chat-9"
    assert "chat_id" not in two


def test_real_webhook_signature_headers_are_redacted_but_timestamps_stay(log_lines):
    log = structlog.get_logger("syncd.api")
    log.warning(
        "webhook.rejected",
        slack=SLACK_VECTOR["headers"],
        meta=META_SIGNATURE["headers"],
        telegram=TELEGRAM_SECRET_HEADER["headers"],
    )
    (line,) = log_lines()
    assert line["slack"] == {
        "X-Slack-Request-Timestamp": "1531420618",
        "X-Slack-Signature": REDACTED,
    }
    assert line["meta"] == {"X-Hub-Signature-256": REDACTED}
    assert line["telegram"] == {"X-Telegram-Bot-Api-Secret-Token": REDACTED}


def test_secret_named_keys_are_redacted_recursively_in_dicts_and_lists(log_lines):
    structlog.get_logger("syncd.test").info(
        "integration.created",
        credentials={"botToken": "anything"},
        attempts=[{"refresh_token": "r1", "client_id": "visible"}, {"apiKey": "k"}],
        password="hunter2",
        secret_key="abc",
        Authorization="whatever",
    )
    (line,) = log_lines()
    assert line["credentials"] == REDACTED
    assert line["attempts"] == [
        {"refresh_token": REDACTED, "client_id": "visible"},
        {"apiKey": REDACTED},
    ]
    assert line["password"] == line["secret_key"] == line["Authorization"] == REDACTED


def test_sync_identifiers_that_merely_look_like_secrets_stay_visible(log_lines):
    structlog.get_logger("syncd.test").info(
        "outbox.queued", idempotency_key="evt-123", nextPageToken="CAEQAA", token=None
    )
    (line,) = log_lines()
    assert line["idempotency_key"] == "evt-123"
    assert line["nextPageToken"] == "CAEQAA"
    assert line["token"] is None, "saying that there is no token reveals nothing"


@pytest.fixture
def known_secrets():
    """Secret values registered the way the engine registers an integration's credentials."""
    values = ("xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy", "xoxp-1234-5678-abcdef",
              "ya29.c.Kp8B-very-secret", TELEGRAM_BOT_TOKEN, "EAAGm0PX4ZCps")
    KNOWN_SECRETS.add(*values, owner="test-integration")
    yield values
    KNOWN_SECRETS.forget("test-integration")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer ya29.a0AfH6SMBx-secret_part", "a0AfH6SMBx"),
        ("sent Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig upstream", "eyJhbGci"),
        ("id_token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl", "eyJzdWIi"),
        (f"expected {SLACK_VECTOR['headers']['X-Slack-Signature']}", "a2114d57b48e"),
        (f"got {META_SIGNATURE['headers']['X-Hub-Signature-256']}", "757107ea0eb2"),
        ("GET https://graph.example/v21.0/me?access_token=unknown0PX4ZCps&x=1", "unknown0PX4"),
        ("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J", "xyzz0Wbap"),
    ],
)
def test_generic_token_shapes_are_masked_wherever_they_appear(log_lines, text, secret):
    structlog.get_logger("syncd.test").error("provider.error", detail=text, items=[text])
    (line,) = log_lines()
    assert secret not in json.dumps(line)
    assert REDACTED in line["detail"]
    assert line["items"] == [line["detail"]]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("auth failed for xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy", "pdFZKV"),
        ("user token xoxp-1234-5678-abcdef rejected", "abcdef"),
        ("google said no to ya29.c.Kp8B-very-secret", "Kp8B"),
        (f"GET https://api.telegram.org/bot{TELEGRAM_BOT_TOKEN}/getMe failed", "ABC-DEF1234"),
        ("Error validating access token: EAAGm0PX4ZCps has expired", "EAAGm0PX4"),
        ("GET /me?t=EAAGm0PX4ZCps%21 quoted", "EAAGm0PX4"),
    ],
)
def test_known_secret_values_are_masked_whatever_their_shape(log_lines, known_secrets, text, secret):
    structlog.get_logger("syncd.test").error("provider.error", detail=text, items=[text])
    (line,) = log_lines()
    assert secret not in json.dumps(line)
    assert REDACTED in line["detail"]


def test_a_secret_value_is_masked_in_its_url_encoded_form_too():
    values = SecretValues()
    values.add("a/b+c=d secret")
    assert values.scrub("path /x/a%2Fb%2Bc%3Dd%20secret/y and a/b+c=d secret") == \
        f"path /x/{REDACTED}/y and {REDACTED}"
    assert values.scrub("short words stay") == "short words stay"


def test_prose_around_tokens_survives_masking():
    event = redact_secrets(None, "info", {"event": "Basic auth failed; Bearer token missing"})
    assert event["event"] == "Basic auth failed; Bearer token missing"
    masked = redact_secrets(None, "info", {"event": "sent Bearer abcdefghijkl to slack"})
    assert masked["event"] == f"sent Bearer {REDACTED} to slack"


def test_redaction_leaves_the_callers_objects_untouched():
    headers = {"Authorization": "Bearer abcdefghijkl", "Accept": "application/json"}
    event = {"event": "request", "headers": headers}
    redacted = redact_secrets(None, "info", event)
    assert redacted["headers"]["Authorization"] == REDACTED
    assert headers["Authorization"] == "Bearer abcdefghijkl"


def test_exceptions_are_logged_with_their_traceback_masked(log_lines, known_secrets):
    log = structlog.get_logger("syncd.engine.exporter")
    try:
        raise RuntimeError("slack refused xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy")
    except RuntimeError as exc:
        log.exception("send.failed", error=exc)
    (line,) = log_lines()
    assert "Traceback" in line["exception"] and "RuntimeError" in line["exception"]
    assert "pdFZKV" not in json.dumps(line)
    assert "RuntimeError" in line["error"]


def test_stdlib_loggers_such_as_uvicorn_come_out_as_json_with_context_and_masking(log_lines, known_secrets):
    with bound(platform="telegram"):
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
        logging.getLogger("asyncio").warning(
            "job failed calling https://api.telegram.org/bot%s/getUpdates", TELEGRAM_BOT_TOKEN
        )
    started, failed = log_lines()
    assert started == {
        "event": "Started server process [42]",
        "level": "info",
        "logger": "uvicorn.error",
        "platform": "telegram",
        "timestamp": started["timestamp"],
    }
    assert failed["level"] == "warning"
    assert TELEGRAM_BOT_TOKEN not in failed["event"] and REDACTED in failed["event"]


def test_levels_below_the_configured_one_are_dropped_and_chatty_libraries_quieted(log_lines):
    structlog.get_logger("syncd.test").debug("not shown")
    logging.getLogger("httpx").info("HTTP Request: GET https://slack.com/api/auth.test")
    logging.getLogger("httpx").warning("connection pool full")
    (line,) = log_lines()
    assert line["event"] == "connection pool full"


def test_configuring_twice_does_not_duplicate_lines(log_lines):
    configure_logging("info", "json")
    structlog.get_logger("syncd.test").info("once")
    assert [line["event"] for line in log_lines()] == ["once"]


def test_console_format_is_human_readable_and_still_redacted(log_lines, capsys):
    configure_logging("DEBUG", "console")
    structlog.get_logger("syncd.cli").debug("resync.started", integration_id="int-1", token="t0k")
    err = capsys.readouterr().err
    assert "resync.started" in err and "integration_id=int-1" in err
    assert "t0k" not in err and REDACTED in err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err.splitlines()[0])


@pytest.mark.parametrize(
    ("level", "fmt", "message"),
    [("LOUD", "json", "unknown log level 'LOUD'"), ("INFO", "xml", "unknown log format 'xml'")],
)
def test_a_wrong_level_or_format_is_refused_with_a_clear_message(level, fmt, message):
    with pytest.raises(ValueError, match=message):
        configure_logging(level, fmt)


def test_uvicorn_logs_are_routed_even_after_uvicorn_installed_its_own_setup(log_lines):
    # What uvicorn.Config(log_level="warning") with its default log_config leaves behind.
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.setLevel(logging.WARNING)
    uvicorn_error.addHandler(logging.StreamHandler())
    logging.getLogger("uvicorn").propagate = False
    configure_logging("INFO", "json")
    uvicorn_error.info("Application startup complete.")
    (line,) = log_lines()
    assert line["event"] == "Application startup complete." and line["logger"] == "uvicorn.error"


def test_a_jwt_access_token_is_masked_wherever_it_appears():
    from syncd.logs import REDACTED, redact_secrets

    jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoIn0.c2lnbmF0dXJlLXBhcnQ"
    event = redact_secrets(None, "info", {"event": f"refresh answered {jwt} for the tenant"})
    assert jwt not in event["event"] and REDACTED in event["event"]
