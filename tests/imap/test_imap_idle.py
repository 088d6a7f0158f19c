"""IMAP IDLE as the engine's listener, against the real Dovecot: mail delivered while idling
is stored without a scheduled poll (the testbed schedules none, and the poll interval is an
hour), an expunge becomes a tombstone, a dropped IDLE connection hands over to polling and
comes back, the listener follows the integration's pause, resume and delete, and IDLE is
re-issued (RFC 2177) without missing mail."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from imapsupport import expunge

from syncd.kit.connector import Listening
from syncd.providers.imap import idle
from syncd.providers.imap.credentials import ImapCredentials
from syncd.testbed import ADMIN_TOKEN, BASE, Testbed


async def eventually(check: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """``check()`` (awaited if it is a coroutine) once it is truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        got = check()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout_s}s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def bed():
    # An hour between scheduled polls, and no scheduler at all: only IDLE can wake a poll.
    bed = await Testbed.start(poll_interval_s=3600)
    yield bed
    await bed.stop()


async def stored(bed, integration, message_id: str) -> dict[str, Any] | None:
    for chat in (await bed.chats(integration)).values():
        for message in await bed.messages(chat["id"]):
            if message["externalMessageId"] == message_id.strip("<>"):
                return message
    return None


async def idling(bed, integration, connects: int = 1) -> None:
    def up() -> bool:
        listener = bed.engine.listeners.get(integration["id"])
        return bool(listener and listener.is_up and listener.connects >= connects)

    await eventually(up)


async def console_page(bed, path: str) -> str:
    """A console page as a logged-in person sees it."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(bed.daemon.app), base_url=BASE) as browser:
        login = await browser.post("/ui/login", data={"token": ADMIN_TOKEN}, headers={"origin": BASE})
        assert login.status_code == 303
        return (await browser.get(path)).text


async def test_mail_delivered_while_idle_is_stored_and_an_expunge_is_a_tombstone(bed, account):
    account.receive("Alice <alice@outside.test>", "Before syncd")
    integration = await bed.create("imap", account.credentials())
    await idling(bed, integration)

    new = account.receive("Bob <bob@outside.test>", "Arrived while idling", body="pushed")
    message = await eventually(lambda: stored(bed, integration, new))
    assert message["text"].strip() == "pushed" and message["deletedAt"] is None
    chats = await bed.chats(integration)
    assert sorted(c["name"] for c in chats.values()) == ["Arrived while idling", "Before syncd"]

    await asyncio.to_thread(expunge, account, "INBOX", new)

    async def tombstone() -> bool:
        found = await stored(bed, integration, new)
        return bool(found and found["deletedAt"])

    await eventually(tombstone)
    assert bed.engine.listeners.get(integration["id"]).connects == 1


async def test_a_dropped_idle_connection_falls_back_to_polling_and_comes_back(account):
    # Reconnects wait 2 s, so the fallback can be seen while the listener is down.
    bed = await Testbed.start(poll_interval_s=3600, fast_retries=False, retry_base_s=2.0, retry_max_s=2.0)
    try:
        integration = await bed.create("imap", account.credentials())
        await idling(bed, integration)
        listener = bed.engine.listeners.get(integration["id"])

        status = (await bed.api.get(f"/integrations/{integration['id']}/status")).json()
        assert status["listener"]["up"] is True and status["listener"]["here"] is True

        account.servers.dovecot.doveadm("kick", account.email)  # the server closes every connection
        await eventually(lambda: not listener.is_up)
        assert listener.drops == 1 and listener.last_error
        shown = (await bed.api.get(f"/integrations/{integration['id']}/status")).json()["listener"]
        assert shown["up"] is False and shown["drops"] == 1 and shown["lastError"] == listener.last_error
        assert account.password not in str(shown)
        page = await console_page(bed, f"/ui/integrations/{integration['id']}")
        assert "Push connection" in page and "down, polling meanwhile; dropped 1 time" in page
        during = account.receive("Carol <carol@outside.test>", "While the listener was down")
        await bed.engine.poll(integration["id"])  # a scheduled tick polls again while IDLE is down
        assert await stored(bed, integration, during) is not None

        await idling(bed, integration, connects=2)
        after = account.receive("Dave <dave@outside.test>", "After it came back")
        assert await eventually(lambda: stored(bed, integration, after))
    finally:
        await bed.stop()


async def test_the_listener_follows_pause_resume_delete_and_shutdown(account):
    bed = await Testbed.start(poll_interval_s=3600)
    try:
        integration = await bed.create("imap", account.credentials())
        await idling(bed, integration)
        base = f"/integrations/{integration['id']}"
        assert (await bed.api.post(f"{base}/pause", json={})).status_code == 200
        assert bed.engine.listeners.get(integration["id"]) is None
        held = account.receive("Erin <erin@outside.test>", "Held while paused")
        await asyncio.sleep(0.5)
        assert await stored(bed, integration, held) is None

        assert (await bed.api.post(f"{base}/resume", json={})).status_code == 200
        await idling(bed, integration)
        assert await eventually(lambda: stored(bed, integration, held))

        assert (await bed.api.delete(base)).status_code == 200
        assert bed.engine.listeners.get(integration["id"]) is None

        again = await bed.create("imap", account.credentials())
        await idling(bed, again)
        platforms = {p: (await bed.api.get(f"/platforms/{p}")).json() for p in ("imap", "slack")}
        assert [platforms[p]["platform"]["capabilities"]["listen"] for p in ("imap", "slack")] == [True, False]
    finally:
        # Shutdown closes the idling connection at once instead of waiting for the server.
        await asyncio.wait_for(bed.stop(), 10)
    assert bed.engine.listeners.count == 0


class Recorded(Listening):
    def __init__(self) -> None:
        self.ups = 0
        self.changes = 0

    def up(self) -> None:
        self.ups += 1

    def changed(self) -> None:
        self.changes += 1


async def test_idle_is_reissued_before_the_server_may_drop_it_and_still_hears_new_mail(account):
    assert idle.RENEW_S < 29 * 60  # RFC 2177
    conn = await idle.IdleConnection.open(ImapCredentials.model_validate(account.credentials()))
    signals = Recorded()
    task = asyncio.create_task(conn.idle("INBOX", signals, renew_s=0.2))
    try:
        await eventually(lambda: conn.issued >= 4)  # DONE, answered, IDLE again, three times
        account.receive("Frank <frank@outside.test>", "After three renewals")
        await eventually(lambda: signals.changes >= 1)
        assert signals.ups == 1 and not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await conn.close()
