"""One token refresh per integration across replicas: the refresh runs under a lease in the
store, and a replica that loses the race takes the winner's grant instead of refreshing again
(a rotated refresh token used twice may revoke the grant)."""

from __future__ import annotations

import asyncio
from typing import Any

from syncd.engine.context import connector_for
from syncd.sim.base import FaultPlan
from syncd.testbed import GMAIL_PUSH_TOKEN

ACCESS = "sim-access-token"


async def refreshable_gmail(tb) -> dict[str, Any]:
    return await tb.create("gmail", {"accessToken": ACCESS, "emailAddress": tb.gmail.address,
                                     "refreshToken": "sim-refresh-token", "clientId": "sim-client-id",
                                     "clientSecret": "sim-client-secret", "pushToken": GMAIL_PUSH_TOKEN})


async def test_two_replicas_with_an_expired_token_refresh_once_and_share_the_new_grant(tb, gmail_thread):
    gmail = await refreshable_gmail(tb)
    other = await tb.replica()
    integration = await tb.daemon.store.get_integration(gmail["id"])
    ours = await connector_for(tb.engine.ctx, integration)
    theirs = await connector_for(other.engine.ctx, integration)
    assert ours is not theirs
    tb.gmail.expire_token(ACCESS)
    # A slow token endpoint: the second replica asks while the first is still refreshing.
    tb.gmail.faults.plan = FaultPlan(latency_s=0.3, endpoints=frozenset({"token"}))

    await asyncio.gather(ours.identify(), theirs.identify())

    assert tb.gmail.faults.calls["token"] == 1
    stored = await tb.daemon.store.get_credentials(gmail["id"])
    assert stored["accessToken"] != ACCESS
    assert ours.credentials.access_token == theirs.credentials.access_token == stored["accessToken"]


async def test_a_replica_that_refreshes_later_takes_the_stored_grant_without_asking_again(tb, gmail_thread):
    gmail = await refreshable_gmail(tb)
    other = await tb.replica()
    integration = await tb.daemon.store.get_integration(gmail["id"])
    ours = await connector_for(tb.engine.ctx, integration)
    theirs = await connector_for(other.engine.ctx, integration)
    tb.gmail.expire_token(ACCESS)
    await ours.identify()
    await theirs.identify()  # its token is refused too: it reads ours instead of refreshing
    assert tb.gmail.faults.calls["token"] == 1
    assert theirs.credentials.access_token == ours.credentials.access_token


async def test_a_refresh_waits_for_a_lease_held_elsewhere_and_then_refreshes_itself(tb, gmail_thread):
    gmail = await refreshable_gmail(tb)
    integration = await tb.daemon.store.get_integration(gmail["id"])
    ours = await connector_for(tb.engine.ctx, integration)
    tb.gmail.expire_token(ACCESS)
    # A replica that died mid-refresh holds the lease for a moment more.
    assert await tb.daemon.store.acquire_lease(f"refresh:{gmail['id']}", "dead-replica", 0.3)
    await ours.identify()
    assert tb.gmail.faults.calls["token"] == 1
    assert (await tb.daemon.store.get_credentials(gmail["id"]))["accessToken"] == ours.credentials.access_token
