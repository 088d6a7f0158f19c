"""Change notifications as they arrive: the ``validationToken`` handshake, ``clientState``
checked in constant time on every notification of a batch, lifecycle events (reauthorize,
removed, missed), and each changed message fetched by its ``resource``."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from typing import Any

from syncd.kit.connector import body_digest
from syncd.kit.errors import PermanentError, SignatureError
from syncd.providers.teams.graph import TeamsBase
from syncd.providers.teams.ids import _q, locate, parse_resource
from syncd.universal import (
    Changes,
    ChatData,
    MessageData,
    WebhookAccepted,
    WebhookAnswer,
    WebhookRequest,
)


class TeamsWebhooks(TeamsBase):
    """Deliveries verified, then turned into changes."""

    def accept_webhook(self, request: WebhookRequest) -> WebhookAccepted:
        token = request.query.get("validationToken")
        if token is not None:
            # Graph checks reachability: 200, text/plain, the URL-decoded token, within 10 s.
            return WebhookAccepted(None, WebhookAnswer(200, token, "text/plain"))
        notifications = self._verified(request.body)
        return WebhookAccepted(self._delivery_id(request.body, notifications), WebhookAnswer(202, b"", "text/plain"))

    def _verified(self, body: bytes) -> list[dict[str, Any]]:
        """The batch's notifications, every one carrying our clientState; else SignatureError."""
        expected = self._client_state()
        if not expected:
            raise SignatureError("teams: this integration has no clientState; notifications are refused")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise SignatureError("teams: the delivery is not JSON") from None
        items = payload.get("value") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise SignatureError("teams: not a change-notification batch")
        for item in items:
            given = item.get("clientState")
            # One wrong clientState refuses the whole batch: it was not all sent by Graph for us.
            if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
                raise SignatureError("teams: clientState missing or wrong")
        return items

    def _delivery_id(self, body: bytes, notifications: list[dict[str, Any]]) -> str:
        digest = body_digest(body)
        # An `updated` notification without resource data carries no version: two edits of one
        # message arrive as identical bytes, and deduplicating them would drop the second. Those
        # are deduplicated within the second only (a replay); fetching twice is harmless.
        if any(n.get("changeType") == "updated" and not (n.get("resourceData") or {}).get("lastModifiedDateTime")
               for n in notifications):
            return f"{digest}:{int(self.ctx.clock())}"
        return digest

    async def parse_webhook(self, request: WebhookRequest) -> Changes:
        changes = Changes()
        targets: dict[tuple[str, str, str | None], None] = {}
        for item in json.loads(request.body)["value"]:
            event = item.get("lifecycleEvent")
            if event == "missed":
                changes.resync_requested = True
            elif event == "reauthorizationRequired":
                if not await self._reauthorize(str(item.get("subscriptionId") or "")):
                    changes.poll_requested = True
            elif event == "subscriptionRemoved":
                # maintain recreates it (Graph no longer lists it); a poll covers the gap.
                changes.poll_requested = True
            elif not event:
                resource = item.get("resource") or (item.get("resourceData") or {}).get("@odata.id") or ""
                target = parse_resource(str(resource))
                if target is not None:
                    targets[target] = None
        fetched = await self._each(self._fetch(*target) for target in targets)
        changes.messages = [m for m in fetched if m is not None]
        changes.chats = await self._describe(dict.fromkeys(m.external_chat_id for m in changes.messages))
        return changes

    async def _fetch(self, chat: str, message_id: str, root: str | None) -> MessageData | None:
        where = locate(chat)
        tail = f"{_q(root)}/replies/{_q(message_id)}" if root else _q(message_id)
        try:
            raw = await self._call("GET", f"{where.path}/messages/{tail}")
        except PermanentError as exc:
            if exc.status == 404:  # hard-deleted since the notification
                return self._tombstone(where, message_id, root)
            raise
        await self._my_id()
        return self._map(raw, where)

    async def _describe(self, chats: Iterable[str]) -> list[ChatData]:
        """Names of chats this process has not described yet, so a new chat arrives named."""
        out: list[ChatData] = []
        for chat in chats:
            if chat in self._described:
                continue
            where = locate(chat)
            try:
                if where.channel:
                    team_id = chat.split("/")[1]
                    team = await self._call("GET", f"/teams/{_q(team_id)}", params={"$select": "id,displayName"})
                    out.append(self._channel_chat(team, await self._call("GET", where.path)))
                else:
                    raw = await self._call("GET", where.path, params={"$expand": "members"})
                    out.append(self._chat(raw, await self._my_id()))
            except PermanentError:
                pass  # no name then; the messages are stored all the same
            self._described.add(chat)
        return out
