"""chatMessages as universal messages: an html body also gets a plain ``text``, system event
messages (joins, renames, calls) are skipped, channel replies come with their root post; and
a chat's history read page by page."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

from syncd.kit.errors import CursorExpired, PermanentError
from syncd.providers.teams.graph import TeamsBase
from syncd.providers.teams.ids import Where, _q, locate
from syncd.providers.teams.timestamps import _repair, iso, modified_at
from syncd.universal import ChatData, HistoryPage, MessageData


class _PlainText(HTMLParser):
    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        elif tag in ("img", "emoji"):  # Teams emoji are <emoji alt="😄">; images may have alt text
            self.parts.append(dict(attrs).get("alt") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str | None:
    """The readable text of a Teams html body (tags dropped, entities decoded, one line per block)."""
    parser = _PlainText()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line) or None


def _attachments(raw: dict[str, Any]) -> list[dict[str, Any]] | None:
    # A messageReference is a quoted message, not a file.
    items = [a for a in raw.get("attachments") or []
             if isinstance(a, dict) and a.get("contentType") != "messageReference"]
    return [{"name": a.get("name"), "mimeType": a.get("contentType"), "url": a.get("contentUrl"),
             "externalId": a.get("id")} for a in items] or None


class TeamsMessages(TeamsBase):
    """Messages shaped for the mapping, and history pages."""

    def _map(self, raw: dict[str, Any], where: Where) -> MessageData | None:
        """One chatMessage; ``None`` for system events (joins, renames, calls)."""
        if raw.get("messageType", "message") != "message" or not raw.get("id"):
            return None
        raw = _repair(raw)
        body = raw.get("body") or {}
        content = body.get("content") if isinstance(body.get("content"), str) else None
        is_html = str(body.get("contentType", "")).lower() == "html"
        sender = ((raw.get("from") or {}).get("user") or {}).get("id")
        me = (self._me or {}).get("id")
        ctx = {
            "chat": where.external_chat_id,
            "html": content if is_html and content else None,
            "text": (html_to_text(content) if is_html else content) if content else None,
            # In a channel every root post opens a thread; chats have no threads.
            "threadRoot": raw.get("replyToId") or (raw["id"] if where.channel else None),
            "attachments": _attachments(raw),
            "fromSelf": bool(me and sender == me),
        }
        return self.mapping.message(raw, ctx)

    def _tombstone(self, where: Where, message_id: str, root: str | None) -> MessageData:
        ctx = {"chat": where.external_chat_id, "goneAt": iso(self.ctx.clock()), "threadRoot": root}
        return self.mapping.message({"id": message_id}, ctx)

    def _mapped(self, raws: Iterable[dict[str, Any]], where: Where) -> list[MessageData]:
        return [m for m in (self._map(r, where) for r in raws) if m is not None]

    async def _replies(self, where: Where, root: str, since: datetime | None = None) -> list[dict[str, Any]]:
        replies: list[dict[str, Any]] = []
        path = f"{where.path}/messages/{_q(root)}/replies"
        async for page in self._pages(path, {"$top": self.page_size}, "GET replies"):
            replies += [r for r in page.get("value") or [] if since is None or (modified_at(r) or since) > since]
        return replies

    async def _with_replies(self, where: Where, roots: list[dict[str, Any]],
                            since: datetime | None = None) -> list[dict[str, Any]]:
        if not where.channel:
            return roots
        threads = await self._each(self._replies(where, r["id"], since) for r in roots if r.get("id"))
        return [m for root, replies in zip(roots, threads) for m in (root, *replies)]

    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        where = locate(chat.external_chat_id)
        url, params = (self._follow(cursor), None) if cursor else (f"{where.path}/messages", {"$top": self.page_size})
        try:
            page = await self._call("GET", url, params=params)
        except CursorExpired:
            raise
        except PermanentError as exc:
            if cursor and exc.status == 400:  # a skiptoken Graph no longer takes: start over
                raise CursorExpired("the saved @odata.nextLink was refused", status=400, code=exc.code) from None
            if exc.status == 404:  # the chat is gone or we left it: nothing more to read
                return HistoryPage(messages=[])
            raise
        next_link = page.get("@odata.nextLink") or None
        if next_link is not None and next_link == cursor:
            raise PermanentError("chat messages: pagination token repeated; stopping")
        raws = await self._with_replies(where, [r for r in page.get("value") or [] if isinstance(r, dict)])
        await self._my_id()
        return HistoryPage(self._mapped(raws, where), next_link)
