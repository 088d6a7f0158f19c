"""Graph change-notification subscriptions kept alive by ``maintain``: created, renewed before
they expire (chatMessage subscriptions live at most 60 minutes), replaced when the
``clientState`` changes, deleted when no longer wanted or when the integration is disconnected."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

from syncd.kit.errors import (
    AuthError,
    PermanentError,
    ProviderError,
    RetryableError,
    TransientError,
)
from syncd.providers.teams.graph import TeamsBase
from syncd.providers.teams.ids import _q, channel_id, locate
from syncd.providers.teams.timestamps import iso, parse_time

#: Graph refuses chatMessage subscriptions that live longer than 60 minutes; the margin absorbs
#: clock skew between us and Graph.
SUBSCRIPTION_LIFETIME_S = 58 * 60
RENEW_BEFORE_S = 20 * 60
CHANGE_TYPES = "created,updated,deleted"


class TeamsSubscriptions(TeamsBase):
    """One subscription per wanted resource; ``_reauthorize`` also answers a webhook's
    ``reauthorizationRequired`` lifecycle event."""

    async def maintain(self, state: Any) -> Any:
        """Keep one change-notification subscription per wanted resource alive: create what is
        missing (never made, expired, or removed by Graph), renew what expires within 20
        minutes, delete what is no longer wanted. State: ``{"subscriptions": {resource: {id,
        expiresAt[, error]}}}``."""
        known: dict[str, dict[str, Any]] = dict((state or {}).get("subscriptions") or {})
        if not self.ctx.public_webhooks:
            return {"subscriptions": known, "note": "no SYNCD_PUBLIC_URL: Graph cannot reach syncd; polling only"}
        rotated = not self._client_state()
        if rotated:
            await self._new_client_state()
        # New credentials may carry a new clientState: subscriptions made with the old one
        # would have every notification refused. A fingerprint (never the secret) tells.
        fingerprint = hashlib.sha256(str(self._client_state()).encode()).hexdigest()[:16]
        rotated = rotated or (state or {}).get("clientStateId", fingerprint) != fingerprint
        wanted = await self._wanted_resources()
        live: dict[str, dict[str, Any]] = {}
        async for page in self._pages("/subscriptions", None, "GET /subscriptions"):
            live.update({s["id"]: s for s in page.get("value") or [] if isinstance(s, dict) and s.get("id")})
        if rotated:
            # Graph cannot change a subscription's clientState: the old ones go, new ones come.
            ours = {e.get("id") for e in known.values()} | {
                i for i, s in live.items() if s.get("notificationUrl") == self.ctx.webhook_url}
            for subscription_id in filter(None, ours):
                await self._unsubscribe(subscription_id)
            live, known = {}, {}
        subscriptions: dict[str, dict[str, Any]] = {}
        for resource in wanted:
            entry = known.get(resource) or {}
            current = live.get(entry.get("id", "")) or next(
                (s for s in live.values() if s.get("notificationUrl") == self.ctx.webhook_url
                 and s.get("resource") == resource), None)
            try:
                if current is None:
                    subscriptions[resource] = await self._subscribe(resource)
                elif (parse_time(current.get("expirationDateTime")) or datetime.min.replace(tzinfo=UTC)) \
                        .timestamp() - self.ctx.clock() < RENEW_BEFORE_S:
                    subscriptions[resource] = await self._renew(current["id"], resource)
                else:
                    subscriptions[resource] = {"id": current["id"], "expiresAt": current.get("expirationDateTime")}
            except AuthError:
                raise
            except ProviderError as exc:  # kept and retried on the next run; the others go on
                subscriptions[resource] = {**entry, "error": str(exc)[:300]}
        for resource, entry in known.items():
            if resource not in subscriptions and entry.get("id"):
                await self._unsubscribe(entry["id"])
        return {"subscriptions": subscriptions, "clientStateId": fingerprint}

    async def unsubscribe(self, state: Any) -> None:
        """Delete every subscription of this integration: those ``maintain`` recorded and any
        other of the account's that notifies our webhook URL (one made by a run whose state
        was lost). One Graph no longer has is gone already."""
        ids = {e.get("id") for e in ((state or {}).get("subscriptions") or {}).values() if isinstance(e, dict)}
        async for page in self._pages("/subscriptions", None, "GET /subscriptions"):
            ids |= {s.get("id") for s in page.get("value") or []
                    if isinstance(s, dict) and s.get("notificationUrl") == self.ctx.webhook_url}
        for subscription_id in sorted(filter(None, ids)):
            try:
                await self._call("DELETE", f"/subscriptions/{_q(subscription_id)}")
            except PermanentError as exc:
                if exc.status != 404:
                    raise

    async def _unsubscribe(self, subscription_id: str) -> None:
        try:
            await self._call("DELETE", f"/subscriptions/{_q(subscription_id)}")
        except (PermanentError, RetryableError):
            pass  # it expires within the hour anyway

    async def _new_client_state(self) -> None:
        """Credentials replaced without a clientState (``PUT .../credentials`` does not run
        ``prepare_credentials``): make one and store it with the credentials."""
        self.credentials = self.credentials.model_copy(update={"client_state": secrets.token_urlsafe(32)})
        if self.ctx.on_credentials is not None:
            await self.ctx.on_credentials(self.credentials.model_dump(by_alias=True, exclude_none=True))

    async def _wanted_resources(self) -> list[str]:
        override = self.settings.get("subscriptionResources")
        if isinstance(override, list) and override:
            return [str(r) for r in override]
        only = self.settings.get("importChats")
        channels = [channel_id(t["id"], c["id"]) for t, c in await self._teams()]
        if only is not None:
            chats = [c for c in only if not locate(c).channel]
            return [f"{locate(c).path}/messages" for c in chats] + [
                f"{locate(c).path}/messages" for c in channels if c in only]
        me = await self._my_id()
        if not me:
            raise TransientError("teams: cannot tell the account's user id; subscriptions wait")
        return [f"/users/{me}/chats/getAllMessages"] + [f"{locate(c).path}/messages" for c in channels]

    def _expiry(self) -> str:
        return iso(self.ctx.clock() + SUBSCRIPTION_LIFETIME_S)

    async def _subscribe(self, resource: str) -> dict[str, Any]:
        created = await self._call("POST", "/subscriptions", json={
            "changeType": CHANGE_TYPES, "notificationUrl": self.ctx.webhook_url,
            "lifecycleNotificationUrl": self.ctx.webhook_url, "resource": resource,
            "expirationDateTime": self._expiry(), "clientState": self._client_state(),
        })
        return {"id": created["id"], "expiresAt": created.get("expirationDateTime")}

    async def _renew(self, subscription_id: str, resource: str) -> dict[str, Any]:
        try:
            renewed = await self._call("PATCH", f"/subscriptions/{_q(subscription_id)}",
                                       json={"expirationDateTime": self._expiry()})
        except PermanentError as exc:
            if exc.status != 404:
                raise
            return await self._subscribe(resource)  # expired or removed in the meantime
        return {"id": subscription_id, "expiresAt": renewed.get("expirationDateTime")}

    async def _reauthorize(self, subscription_id: str) -> bool:
        """Renewing a subscription reauthorizes it; False when Graph no longer has it."""
        if not subscription_id:
            return False
        try:
            await self._call("PATCH", f"/subscriptions/{_q(subscription_id)}",
                             json={"expirationDateTime": self._expiry()})
        except PermanentError as exc:
            if exc.status == 404:
                return False
            raise
        return True
