"""Gmail access tokens expire: syncd refreshes once and keeps the new token; when the refresh
itself is refused the integration shows the error until new credentials bring it back."""

from __future__ import annotations

from e2esupport import stored_messages

from syncd.testbed import GMAIL_PUSH_TOKEN


def _credentials(tb, access_token: str, refresh_token: str = "sim-refresh-token") -> dict:
    # The simulator's OAuth client (see syncd/sim/gmail.py's defaults).
    return {"accessToken": access_token, "emailAddress": tb.gmail.address, "pushToken": GMAIL_PUSH_TOKEN,
            "refreshToken": refresh_token, "clientId": "sim-client-id", "clientSecret": "sim-client-secret"}


def _mail(tb, thread: str | None, text: str) -> str:
    return tb.gmail.add_incoming(thread, "Ana Lima <ana@example.org>", "Order #7", text)


async def _texts(tb, integration: dict) -> list[str]:
    chats = await tb.daemon.store.list_chats(integration_id=integration["id"])
    return [(m.text or "").strip() for c in chats for m in await stored_messages(tb.daemon.store, c.id)]


async def test_an_expired_access_token_is_refreshed_once_and_the_new_one_is_stored(tb) -> None:
    thread = tb.gmail._box(None).messages[_mail(tb, None, "first")].thread_id
    integration = await tb.create("gmail", _credentials(tb, "sim-access-token"))
    tb.gmail.expire_token("sim-access-token")
    _mail(tb, thread, "second")

    await tb.engine.poll(integration["id"])

    assert "second" in await _texts(tb, integration)
    assert tb.gmail.faults.calls["token"] == 1
    stored = await tb.daemon.store.get_credentials(integration["id"])
    assert stored["accessToken"] != "sim-access-token" and stored["accessToken"] in tb.gmail.tokens
    assert stored["refreshToken"] == "sim-refresh-token"

    # A restarted process starts from the stored token: no second refresh. (The first one
    # stops first: while it runs, this interval's scheduled poll is its turn, not the new one's.)
    await tb.engine.stop(grace_s=1)
    restarted = await tb.replica()
    _mail(tb, thread, "third")
    await restarted.engine.poll(integration["id"])
    assert "third" in await _texts(tb, integration)
    assert tb.gmail.faults.calls["token"] == 1


async def test_a_refused_refresh_puts_the_integration_in_error_until_new_credentials_arrive(tb) -> None:
    thread = tb.gmail._box(None).messages[_mail(tb, None, "first")].thread_id
    integration = await tb.create("gmail", _credentials(tb, "sim-access-token"))
    tb.gmail.expire_token("sim-access-token")
    tb.gmail.refresh_tokens.clear()  # the user revoked syncd's access
    _mail(tb, thread, "second")

    await tb.engine.poll(integration["id"])

    shown = (await tb.api.get(f"/integrations/{integration['id']}")).json()["integration"]
    assert shown["status"] == "error"
    assert "refresh" in shown["statusReason"] and "invalid_grant" in shown["statusReason"]
    assert "second" not in await _texts(tb, integration)

    tb.gmail.add_mailbox(tb.gmail.address, "sim-access-token-2", "sim-refresh-token-2")
    response = await tb.api.put(f"/integrations/{integration['id']}/credentials",
                                json={"credentials": _credentials(tb, "sim-access-token-2", "sim-refresh-token-2")})
    assert response.status_code == 200, response.text
    assert response.json()["integration"]["status"] == "active"

    await tb.engine.poll(integration["id"])
    assert "second" in await _texts(tb, integration)
