"""No secret reaches the logs: not the raw events the code logs, not the JSON lines an operator
reads, through imports, webhooks (good and forged), refreshes and failing sends."""

from __future__ import annotations

import logging

import pytest
import structlog
from e2esupport import wait_for
from structlog.testing import capture_logs

from syncd.logs import configure_logging
from syncd.testbed import ADMIN_TOKEN, APP_SECRET, GMAIL_PUSH_TOKEN


def secrets_of(tb) -> list[str]:
    refreshed = [t for t in tb.gmail.tokens if t.startswith("ya29.")]
    return [*tb.slack.valid_tokens, "xoxb-still-revoked", tb.slack.signing_secret, *tb.gmail.tokens, *refreshed,
            *tb.gmail.refresh_tokens, tb.gmail.client[1], GMAIL_PUSH_TOKEN, APP_SECRET, ADMIN_TOKEN]


async def exercise(tb) -> None:
    """Every path that handles a credential, including the failing ones."""
    ids = tb.slack.seed_workspace()
    slack = await tb.create_slack()
    delivery = tb.slack.post_user_message(ids["general"], "hello", ids["bob"])
    assert (await tb.deliver_slack(slack, delivery)).status_code == 200
    forged = dict(delivery.headers, **{"X-Slack-Signature": "v0=" + "0" * 64})
    assert (await tb.api.post(tb.webhook_url(slack), content=delivery.body, headers=forged)).status_code == 401
    tb.app.fail_next = 2  # the app's callback endpoint is down for a moment

    gmail = await tb.create("gmail", {
        "accessToken": "sim-access-token", "emailAddress": tb.gmail.address, "pushToken": GMAIL_PUSH_TOKEN,
        "refreshToken": "sim-refresh-token", "clientId": "sim-client-id", "clientSecret": "sim-client-secret"})
    tb.gmail.add_incoming(None, "Ana Lima <ana@example.org>", "Hi", "Hello there")
    tb.gmail.expire_token("sim-access-token")
    assert (await tb.push_gmail(gmail)).status_code in (200, 204)
    assert (await tb.push_gmail(gmail, token="wrong-push-token")).status_code == 401

    # A send the platform refuses, then one whose token was revoked.
    await tb.post_event({"id": "evt-1", "type": "message.created", "customerId": "cust-1", "platform": "slack",
                         "externalChatId": "C0NOSUCHCHAN", "message": {"id": "app-1", "text": "lost"}})
    await tb.settle()
    tb.slack.revoked_tokens.update(tb.slack.valid_tokens)
    await tb.post_event({"id": "evt-2", "type": "message.created", "customerId": "cust-1", "platform": "slack",
                         "externalChatId": ids["general"], "message": {"id": "app-2", "text": "refused"}})
    await wait_for(lambda: _in_error(tb, slack["id"]), what="the revoked token to be noticed")
    await tb.engine.poll(slack["id"])
    tb.slack.valid_tokens.add("xoxb-reinstalled-0123456789")
    refused = await tb.api.put(f"/integrations/{slack['id']}/credentials", json={"credentials": {
        "botToken": "xoxb-still-revoked", "signingSecret": tb.slack.signing_secret}})
    assert refused.status_code == 422
    accepted = await tb.api.put(f"/integrations/{slack['id']}/credentials", json={"credentials": {
        "botToken": "xoxb-reinstalled-0123456789", "signingSecret": tb.slack.signing_secret}})
    assert accepted.status_code == 200
    await tb.settle()
    assert tb.gmail.faults.calls["token"] == 1
    assert (await tb.daemon.store.find_outbox("cust-1", "evt-2")).status == "sent"


async def _in_error(tb, integration_id: str) -> bool:
    return (await tb.daemon.store.get_integration(integration_id)).status == "error"


async def test_no_secret_is_ever_handed_to_the_logger(tb) -> None:
    with capture_logs() as events:
        await exercise(tb)

    logged = repr(events)
    assert any(e.get("log_level") == "warning" for e in events)
    leaked = [s for s in secrets_of(tb) if s in logged]
    assert leaked == []


@pytest.fixture
def json_logs(capsys):
    """The daemon's JSON log pipeline at DEBUG, writing to the captured stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("DEBUG", "json")
    yield lambda: capsys.readouterr().err
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


async def test_no_secret_appears_in_the_json_log_lines(tb, json_logs) -> None:
    await exercise(tb)

    output = json_logs()
    assert '"level": "warning"' in output and '"logger": "httpx"' in output
    leaked = [s for s in secrets_of(tb) if s in output]
    assert leaked == []
