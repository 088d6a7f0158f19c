"""Every platform that declares its webhooks and ships a simulator, by existing, through the
HTTP API: each documented webhook sample is accepted signed and stored once however often it
is delivered, and a validly signed body that is not an event is never 401."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from contractsupport import LOADED, PLATFORMS, declares, fixtures, sign, simulator_of

from syncd.kit.signed import form_sorted
from syncd.testbed import BASE, Testbed
from syncd.universal import WebhookRequest


def samples(platform: str) -> list[bytes]:
    found = [s["payload"] for s in fixtures(platform).get("samples") or [] if s.get("kind") == "webhook"]
    return [json.dumps(p).encode() if not isinstance(p, str) else p.encode() for p in found]


def cases() -> list[Any]:
    return [pytest.param(p, id=p) for p in PLATFORMS
            if declares(p) and LOADED[p].manifest.webhook.events and samples(p) and simulator_of(p) is not None]


async def _integration(platform: str, customer: str) -> tuple[Testbed, dict[str, Any], Any]:
    sim = simulator_of(platform)
    tb = await Testbed.start(sims={platform: sim})
    integration = await tb.create(platform, sim.trial_credentials(), customer=customer)
    return tb, integration, sim


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


async def _signed(tb: Testbed, integration: dict[str, Any], body: bytes) -> WebhookRequest:
    """``body`` as the platform posts it to the integration, signed."""
    platform = integration["platform"]
    credentials = await tb.daemon.store.get_credentials(integration["id"])
    url = BASE + tb.webhook_url(integration)
    webhook = LOADED[platform].manifest.webhook
    # A form sample of a platform that also posts JSON (its signature then in the body).
    form = webhook.format == "form" or (any(v.path for v in webhook.verify) and not _is_json(body))
    content_type = "application/x-www-form-urlencoded" if form else "application/json"
    request = WebhookRequest("POST", url, {"content-type": content_type}, {}, body)
    scope = {"credentials": credentials, "header": request.headers, "query": request.query, "url": url,
             "publicUrl": url, "settings": {}, "formSorted": form_sorted(request), "webhookUrl": url}
    return sign(webhook.verify, request, scope, tb.clock.now().timestamp())


async def _deliver(tb: Testbed, integration: dict[str, Any], body: bytes) -> int:
    signed = await _signed(tb, integration, body)
    query = "&".join(f"{k}={v}" for k, v in signed.query.items())
    response = await tb.api.post(tb.webhook_url(integration) + (f"?{query}" if query else ""),
                                 content=signed.body, headers=signed.headers)
    return response.status_code


async def _settled(tb: Testbed) -> None:
    """Until the inbox is empty and stays so (a delivery may wait on work it started, such as
    listing the platform's users)."""
    for _ in range(50):
        await tb.settle()
        await asyncio.sleep(0.05)
        counts = await tb.daemon.store.inbox_counts()
        if not counts.get("pending"):
            return


async def _parsed(tb: Testbed, integration: dict[str, Any], bodies: list[bytes]) -> set[str]:
    """The message ids the integration's connector takes from ``bodies``, signed as delivered."""
    connector = await tb.engine.ctx.connector(await tb.engine.get_integration(integration["id"]))
    ids: set[str] = set()
    for body in bodies:
        signed = await _signed(tb, integration, body)
        if connector.accept_webhook(signed).delivery_id is not None:
            # A delete of a message never stored leaves nothing to mark.
            ids |= {m.external_message_id for m in (await connector.parse_webhook(signed)).messages
                    if m.deleted_at is None}
    return ids


async def _stored(tb: Testbed, integration: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    await _settled(tb)
    out = {}
    for chat in (await tb.api.get("/chats", params={"integrationId": integration["id"],
                                                    "customerId": integration["customerId"]})).json()["chats"]:
        for m in await tb.messages(chat["id"]):
            out[m["externalMessageId"]] = (m["text"], m["deliveryState"], m["deletedAt"] is not None)
    return out


@pytest.mark.parametrize("platform", cases())
async def test_every_documented_sample_is_stored_once_however_often_delivered(platform):
    tb, integration, _ = await _integration(platform, "cust-forward")
    try:
        for body in samples(platform):
            assert await _deliver(tb, integration, body) == 200
            assert await _deliver(tb, integration, body) == 200  # the platform's redelivery
        await tb.settle()
        forward = await _stored(tb, integration)
        assert (await tb.daemon.store.inbox_counts()).get("failed", 0) == 0
        # What the platform's own connector makes of the same samples is what was stored: those
        # of another account (a sample's page or number is not the simulator's) are dropped.
        expected = await _parsed(tb, integration, samples(platform))
        assert set(forward) == expected
    finally:
        await tb.stop()


@pytest.mark.parametrize("platform", cases())
async def test_a_signed_body_that_is_not_an_event_is_not_refused_as_unsigned(platform):
    tb, integration, _ = await _integration(platform, "cust-1")
    try:
        status = await _deliver(tb, integration, b"this is not json")
        assert status in (200, 400)
        assert (await tb.api.post(tb.webhook_url(integration), content=b"{}")).status_code == 401
    finally:
        await tb.stop()



async def _distinct(tb: Testbed, integration: dict[str, Any], bodies: list[bytes]) -> list[bytes]:
    """``bodies`` with one per delivery id: documentation reuses ids across its examples, and a
    platform that sends one id twice means one delivery."""
    connector = await tb.engine.ctx.connector(await tb.engine.get_integration(integration["id"]))
    seen: set[str] = set()
    out = []
    for body in bodies:
        signed = await _signed(tb, integration, body)
        delivery = connector.accept_webhook(signed).delivery_id
        if delivery is not None and delivery not in seen:
            seen.add(delivery)
            out.append(body)
    return out


@pytest.mark.parametrize("platform", cases())
async def test_samples_delivered_out_of_order_store_what_in_order_stores(platform):
    """The platform may deliver in any order (retries overtake, queues reorder): an edit or a
    delete taken before its message, or a status before its send, ends where order would."""
    stored = []
    bodies: list[bytes] = []
    for customer, reverse in (("cust-in-order", False), ("cust-reversed", True)):
        tb, integration, _ = await _integration(platform, customer)
        try:
            bodies = bodies or await _distinct(tb, integration, samples(platform))
            for body in (bodies[::-1] if reverse else bodies):
                assert await _deliver(tb, integration, body) == 200
            stored.append(await _stored(tb, integration))
        finally:
            await tb.stop()
    assert len(bodies) > 0
    assert stored[1] == stored[0]
