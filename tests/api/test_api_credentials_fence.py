"""Credentials are fenced by a version: a token refresh that was in flight while an operator put
new credentials (or that another replica beat) is refused instead of overwriting them."""

from __future__ import annotations

from syncd.engine.context import connector_for


async def test_a_refresh_in_flight_during_new_credentials_never_overwrites_them(tb):
    tb.slack.seed_workspace()
    slack = await tb.create_slack()
    integration = await tb.daemon.store.get_integration(slack["id"])
    stale = await connector_for(tb.engine.ctx, integration)  # built from version 1
    tb.slack.valid_tokens.add("xoxb-new-grant-0123456789")
    put = await tb.api.put(f"/integrations/{slack['id']}/credentials", json={"credentials": {
        "botToken": "xoxb-new-grant-0123456789", "signingSecret": tb.slack.signing_secret}})
    assert put.status_code == 200, put.text

    # The stale connector's refresh finishes now and hands its grant over to be stored.
    await stale.ctx.on_credentials({"botToken": "xoxb-stale-refresh-999999", "signingSecret": "x" * 32})
    stored, version = await tb.daemon.store.get_versioned_credentials(slack["id"])
    assert stored["botToken"] == "xoxb-new-grant-0123456789"
    assert version == 2
    fresh = await connector_for(tb.engine.ctx, integration)
    assert fresh is not stale and fresh.credentials.bot_token == "xoxb-new-grant-0123456789"


async def test_a_refresh_from_current_credentials_is_stored_and_the_next_one_builds_on_it(tb):
    tb.slack.seed_workspace()
    slack = await tb.create_slack()
    integration = await tb.daemon.store.get_integration(slack["id"])
    connector = await connector_for(tb.engine.ctx, integration)
    token = next(iter(tb.slack.valid_tokens))
    await connector.ctx.on_credentials({"botToken": token, "signingSecret": tb.slack.signing_secret, "n": 1})
    await connector.ctx.on_credentials({"botToken": token, "signingSecret": tb.slack.signing_secret, "n": 2})
    stored, version = await tb.daemon.store.get_versioned_credentials(slack["id"])
    assert (stored["n"], version) == (2, 3)


async def test_credentials_stored_before_versions_existed_are_version_0_and_fence_too(tb):
    tb.slack.seed_workspace()
    slack = await tb.create_slack()
    store = tb.daemon.store
    await store.integrations.update_one({"_id": slack["id"]}, {"$unset": {"credentialsVersion": ""}})
    assert (await store.get_versioned_credentials(slack["id"]))[1] == 0
    assert await store.set_credentials(slack["id"], {"a": 1}, based_on=0) == 1
    assert await store.set_credentials(slack["id"], {"a": 2}, based_on=0) is None
    assert (await store.get_credentials(slack["id"])) == {"a": 1}
