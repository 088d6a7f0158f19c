"""The account and its chats: 1:1, group and meeting chats with their members, and the
channels of the teams it has joined (none without the Teams scopes)."""

from __future__ import annotations

from typing import Any

from syncd.kit.errors import PermanentError, RetryableError
from syncd.providers.teams.graph import TeamsBase
from syncd.providers.teams.ids import _q, channel_id
from syncd.providers.teams.timestamps import _repair
from syncd.universal import ChatData, UserData


class TeamsChats(TeamsBase):
    """Who we are in Graph, and every chat and channel we can read."""

    async def identify(self) -> list[UserData]:
        self._me = await self._call("GET", "/me", params={"$select": "id,displayName,mail,userPrincipalName"})
        return [self.mapping.user(self._me, {"isSelf": True})]

    async def _my_id(self) -> str | None:
        if self._me is None:
            try:
                await self.identify()
            except (PermanentError, RetryableError):
                return None  # direction is also decided from user_platforms
        return (self._me or {}).get("id")

    def _chat(self, raw: dict[str, Any], me: str | None) -> ChatData:
        members = [m for m in raw.get("members") or [] if isinstance(m, dict)]
        names = [m["displayName"] for m in members if m.get("userId") != me and m.get("displayName")]
        ctx = {"externalChatId": raw.get("id"), "participants": [m["userId"] for m in members if m.get("userId")],
               "name": ", ".join(names) or None}
        return self.mapping.chat(_repair({**raw, "topic": raw.get("topic") or None}), ctx)

    def _channel_chat(self, team: dict[str, Any], channel: dict[str, Any]) -> ChatData:
        name = " / ".join(n for n in (team.get("displayName"), channel.get("displayName")) if n)
        ctx = {"externalChatId": channel_id(team["id"], channel["id"]), "name": name or None}
        return self.mapping.chat(_repair(channel), ctx)

    async def list_chats(self) -> list[ChatData]:
        me = await self._my_id()
        chats = [self._chat(raw, me) for raw in await self._all_chats()]
        return chats + await self._channels()

    async def _all_chats(self) -> list[dict[str, Any]]:
        raws: list[dict[str, Any]] = []
        params = {"$top": self.page_size, "$expand": "members,lastMessagePreview"}
        async for page in self._pages("/me/chats", params, "GET /me/chats"):
            raws += [r for r in page.get("value") or [] if isinstance(r, dict) and r.get("id")]
        return raws

    async def _teams(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(team, channel) of every channel of the joined teams; none without the Teams scopes."""
        found: list[tuple[dict[str, Any], dict[str, Any]]] = []
        try:
            async for page in self._pages("/me/joinedTeams", None, "GET /me/joinedTeams"):
                for team in page.get("value") or []:
                    async for channels in self._pages(f"/teams/{_q(team['id'])}/channels", None, "GET channels"):
                        found += [(team, c) for c in channels.get("value") or [] if c.get("id")]
        except PermanentError as exc:
            if exc.status != 403:
                raise
        return found

    async def _channels(self) -> list[ChatData]:
        return [self._channel_chat(team, channel) for team, channel in await self._teams()]
