"""Rotating secrets without downtime: several admin tokens, several credential keys."""

from __future__ import annotations

import httpx

from syncd.models import Integration
from syncd.store import Store, _fernet
from syncd.testbed import Testbed


async def test_any_of_several_admin_tokens_is_accepted_and_a_removed_one_is_refused():
    tb = await Testbed.start(admin_token="old-admin-token, new-admin-token")
    try:
        for token, status in (("old-admin-token", 200), ("new-admin-token", 200), ("other", 401), ("", 401)):
            answer = await tb.api.get("/integrations", headers={"authorization": f"Bearer {token}"})
            assert answer.status_code == status, token
        tb.daemon.settings.admin_token = type(tb.daemon.settings.admin_token)("new-admin-token")
        refused = await tb.api.get("/integrations", headers={"authorization": "Bearer old-admin-token"})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
    finally:
        await tb.stop()


async def test_credentials_written_with_an_old_key_stay_readable_after_the_key_rotates():
    old = await Store.connect("mongomock://", secret_key="old-key")
    integration = Integration(customer_id="c1", platform="slack")
    await old.insert_integration(integration, {"botToken": "xoxb-rotating", "signingSecret": "s"})
    # Same database, new process configured with the new key first and the old one after it.
    rotated = Store(old.client, old.db, _fernet("new-key,old-key"))
    assert (await rotated.get_credentials(integration.id))["botToken"] == "xoxb-rotating"
    await rotated.set_credentials(integration.id, {"botToken": "xoxb-rotating", "signingSecret": "s"})
    # Rewritten with the new key: the old key alone can no longer read it, the new one can.
    new_only = Store(old.client, old.db, _fernet("new-key"))
    assert (await new_only.get_credentials(integration.id))["botToken"] == "xoxb-rotating"
    raw = await old.db["integrations"].find_one({"_id": integration.id})
    assert "xoxb-rotating" not in str(raw)
    try:
        await old.get_credentials(integration.id)
    except ValueError as exc:
        assert "xoxb" not in str(exc)
    else:
        raise AssertionError("the old key alone must not read credentials written with the new key")


async def test_the_cli_uses_the_first_of_several_admin_tokens(monkeypatch):
    from syncd import cli

    monkeypatch.setenv("SYNCD_ADMIN_TOKEN", "first-token,second-token")
    args = cli.parser().parse_args(["status", "abc"])
    with cli._client(args) as client:
        assert client.headers["authorization"] == "Bearer first-token"
    assert isinstance(client, httpx.Client)
