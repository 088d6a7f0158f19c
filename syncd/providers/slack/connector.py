"""Slack: what ``mappings/slack.yaml`` cannot say.

- ``ts`` is unique only per channel: ids are composed as ``{channel}:{ts}`` and decoded again
  before sending; an edit or delete needs one.
- history hides thread replies: every thread parent on a page (a deleted one, shown as a
  tombstone, too) pulls its replies in with the manifest's ``replies`` request, each once.
- the poll keeps one mark per chat (the newest ``ts`` seen), plus ``*``: when the first mark was
  taken, where a chat with no mark of its own starts.
- the mapping is handed whether the author is our own bot (``fromSelf``) and the message's
  files as attachments; DMs are named after the other user.
- "Add to Slack" (OAuth) gives the bot token.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from syncd.kit import templates
from syncd.kit.connector import OAuthSpec
from syncd.kit.declarative import ManifestConnector
from syncd.kit.errors import PermanentError, RetryableError
from syncd.kit.manifest import Request
from syncd.universal import (
    Changes,
    ChatData,
    MessageData,
    OutgoingMessage,
    PollResult,
    UserData,
    WebhookRequest,
)

#: Bot scopes the connector uses: list and read every conversation kind, names, post/edit/delete.
BOT_SCOPES = (
    "channels:read", "channels:history", "groups:read", "groups:history", "im:read", "im:history",
    "mpim:read", "mpim:history", "users:read", "chat:write",
)


def _files(raw: dict[str, Any]) -> list[dict[str, Any]] | None:
    files = raw.get("files")
    if not files:
        return None
    return [
        {"name": f.get("name") or f.get("title"), "mimeType": f.get("mimetype"), "size": f.get("size"),
         "url": f.get("url_private"), "externalId": f.get("id")}
        for f in files if isinstance(f, dict)
    ]


def _bare(value: str | None) -> str | None:
    # The app may hand back a bare ts it got elsewhere; ours are "channel:ts".
    return value.partition(":")[2] or value if value else None


class SlackConnector(ManifestConnector):
    #: "Add to Slack": the consent page is on slack.com, ``oauth.v2.access`` in the Web API.
    oauth = OAuthSpec(
        authorize_url="{slack_oauth}/oauth/v2/authorize",
        token_url="/oauth.v2.access",
        scopes=BOT_SCOPES,
        base_url_key="slack",
        scope_separator=",",
    )

    @classmethod
    def credentials_from_oauth(cls, token: dict[str, Any], *, client_id: str, client_secret: str) -> dict[str, Any]:
        """The bot token of ``oauth.v2.access``. The signing secret belongs to the Slack app,
        not the install: the connect flow adds it from the OAuth client configuration."""
        bot_token = token.get("access_token")
        if not isinstance(bot_token, str) or not bot_token.startswith("xoxb-"):
            raise ValueError("Slack answered without a bot token (xoxb-...); the app must request bot scopes")
        return {"botToken": bot_token}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._own: set[str] | None = None

    # -- identity ---------------------------------------------------------------------------
    async def identify(self) -> list[UserData]:
        _, body = await self.call("identify", self.required("identify"), self.scope())
        ids = [body.get("user_id"), body.get("bot_id")] if isinstance(body, dict) else []
        users = [self.map_as("user", "self", body, {"id": i}) for i in ids if i]
        self._own = {u.external_user_id for u in users}
        return users

    async def _own_ids(self) -> set[str]:
        if self._own is None:
            try:
                await self.identify()
            except (PermanentError, RetryableError):
                # Not fatal: the engine also decides direction from user_platforms; try again
                # on the next page or delivery.
                return set()
        return self._own or set()

    def map_as(self, kind: str, section: str, record: dict[str, Any], ctx: dict[str, Any]) -> Any:
        if kind == "message":
            own = self._own or set()
            ctx = {**ctx, "fromSelf": record.get("user") in own or record.get("bot_id") in own,
                   "files": _files(record)}
        return super().map_as(kind, section, record, ctx)

    # -- chats ------------------------------------------------------------------------------
    async def list_chats(self) -> list[ChatData]:
        chats = await super().list_chats()
        if not any(c.kind == "dm" for c in chats):
            return chats
        try:
            names = {u.external_user_id: u.display_name for u in await self.list_users()}
        except PermanentError:
            names = {}  # e.g. no users:read scope: the user id is still a usable name
        return [c.model_copy(update={"name": names.get(c.participants[0]) or c.participants[0]})
                if c.kind == "dm" and c.participants else c for c in chats]

    # -- history and polls --------------------------------------------------------------------
    async def expand(self, name: str, spec: Request, body: Any, found: list[tuple[Any, Any]],
                     scope: dict[str, Any]) -> list[tuple[Any, Any]]:
        """A history page's messages, each thread parent followed by its replies."""
        if name not in ("history", "poll"):
            return found
        await self._own_ids()
        kept = {id(record) for record, _ in found}
        out: list[tuple[Any, Any]] = []
        seen: set[str] = set()
        for raw, parent in templates.select(body, spec.records or "."):
            if id(raw) in kept and raw["ts"] not in seen:
                seen.add(raw["ts"])
                out.append((raw, parent))
            if raw.get("reply_count") and raw.get("thread_ts") == raw.get("ts"):
                replies = await self.walk_records("replies", self.named("replies"), {**scope, "thread": raw})
                for r, p in replies:
                    if r["ts"] not in seen:
                        seen.add(r["ts"])
                        out.append((r, p))
        return out

    async def poll(self, state: Any, chats: list[ChatData], lookback_s: float) -> PollResult:
        marks: dict[str, str] = dict(state or {})
        # "*" is when the first mark was taken (before the import read history): a chat with
        # no mark of its own is read from there, so nothing posted during the import is
        # missed. No backfill before it: the import reads history.
        baseline = marks.setdefault("*", f"{self.ctx.clock():.6f}")
        history = self.required("history")
        messages: list[MessageData] = []
        for chat in chats:
            mark = marks.get(chat.external_chat_id, baseline)
            oldest = f"{max(0.0, float(mark) - lookback_s):.6f}"
            found = await self.walk("poll", history, "message",
                                    self.scope(chat=chat.model_dump(by_alias=True), oldest=oldest))
            messages += found
            newest = max((m.external_message_id.partition(":")[2] for m in found), key=float, default=mark)
            marks[chat.external_chat_id] = max(mark, newest, key=float)
        return PollResult(Changes(messages=messages), marks)

    # -- webhooks -----------------------------------------------------------------------------
    async def parse_webhook(self, request: WebhookRequest) -> Changes:
        await self._own_ids()
        return await super().parse_webhook(request)

    # -- export -------------------------------------------------------------------------------
    async def _outgoing(self, name: str, message: OutgoingMessage) -> Any:
        if name != "send" and not message.external_message_id:
            raise PermanentError(f"cannot {name} a message that has no Slack id yet")
        bare = dataclasses.replace(message, external_thread_id=_bare(message.external_thread_id),
                                   external_message_id=_bare(message.external_message_id))
        return await super()._outgoing(name, bare)


CONNECTOR = SlackConnector
