"""Polling, for when notifications cannot reach syncd or may have been missed: the messages
modified since each chat's mark, and new chats with a recent message."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from syncd.kit.errors import PermanentError
from syncd.providers.teams.graph import TeamsBase
from syncd.providers.teams.ids import Where, locate
from syncd.providers.teams.timestamps import iso, modified_at, parse_time, repair_time
from syncd.universal import Changes, ChatData, MessageData, PollResult


class TeamsPolling(TeamsBase):
    """What changed since the marks."""

    async def poll(self, state: Any, chats: list[ChatData], lookback_s: float) -> PollResult:
        marks: dict[str, str] = dict(state or {})
        # "*" is when the first mark was taken (before the import read history): chats with no
        # mark of their own are read from there.
        baseline = marks.setdefault("*", iso(self.ctx.clock()))
        if state is None:
            return PollResult(Changes(), marks)
        await self._my_id()
        targets, new_chats = list(chats), []
        if self.settings.get("importChats") is None:
            new_chats = await self._new_chats({c.external_chat_id for c in chats}, parse_time(baseline))
            targets += new_chats
        messages: list[MessageData] = []
        for chat in targets:
            mark = parse_time(marks.get(chat.external_chat_id, baseline)) or parse_time(baseline)
            assert mark is not None, "the baseline mark is always an ISO time"
            since = mark - timedelta(seconds=lookback_s)
            found, newest = await self._changed_since(locate(chat.external_chat_id), since)
            messages += found
            marks[chat.external_chat_id] = iso(max(mark, newest or mark))
        return PollResult(Changes(messages=messages, chats=new_chats), marks)

    async def _new_chats(self, known: set[str], since: datetime | None) -> list[ChatData]:
        """Chats we do not have yet whose last message is newer than ``since`` (a new DM)."""
        me, found = await self._my_id(), []
        for raw in await self._all_chats():
            last = parse_time(repair_time(((raw.get("lastMessagePreview") or {}).get("createdDateTime")) or ""))
            if raw["id"] not in known and last is not None and since is not None and last > since:
                found.append(self._chat(raw, me))
        return found

    async def _changed_since(self, where: Where, since: datetime) -> tuple[list[MessageData], datetime | None]:
        """Messages modified after ``since``, newest first, and the newest modification time."""
        raws: list[dict[str, Any]] = []
        odata_since = iso(since)
        params: dict[str, Any]
        if where.channel:
            # Channel messages have no $orderby: the delta function filters root posts by time.
            path, params = f"{where.path}/messages/delta", {"$filter": f"lastModifiedDateTime gt {odata_since}"}
        else:
            path, params = f"{where.path}/messages", {
                "$top": self.page_size, "$orderby": "lastModifiedDateTime desc",
                "$filter": f"lastModifiedDateTime gt {odata_since}"}
        try:
            async for page in self._pages(path, params, f"GET {path.rsplit('/', 1)[-1]} since"):
                batch = [r for r in page.get("value") or [] if isinstance(r, dict)]
                fresh = [r for r in batch if (modified_at(r) or since) > since]
                raws += fresh
                if len(fresh) < len(batch):
                    break  # reached the mark
        except PermanentError as exc:
            if exc.status in (403, 404):  # gone, or we left it: one lost chat must not stop the poll
                return [], None
            raise
        raws = await self._with_replies(where, raws, since)
        times = [modified_at(r) for r in raws]
        return self._mapped(raws, where), max((t for t in times if t is not None), default=None)
