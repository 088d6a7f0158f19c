"""Chats and their messages: the list with search, the message view paged back from the
newest, importing chats from the platform's list, resync and deletion of a chat."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from syncd.console.web import PAGE_SIZE, Console, Paging, Refused, see_other

#: Messages shown at a time in a chat.
MESSAGES_PAGE = 50
#: Search text longer than this is cut (it is matched as plain text).
MAX_SEARCH = 200


def add_chats(router: APIRouter, console: Console) -> None:
    store, engine = console.store, console.engine

    async def chat_of(chat_id: str):
        chat = await store.get_chat(chat_id)
        if chat is None:
            raise Refused(404, "There is no such chat (it may have been deleted).")
        return chat

    @router.get("/ui/chats")
    async def chats(request: Request, integration: str = "", customer: str = "", q: str = "") -> Response:
        console.session(request)
        q = q.strip()[:MAX_SEARCH]
        owner = await engine.get_integration(integration) if integration else None
        _, total = await store.page_chats(integration_id=integration, customer_id=customer, search=q, limit=1)
        paging = Paging(request, total)
        page, _ = await store.page_chats(integration_id=integration, customer_id=customer, search=q,
                                         skip=paging.skip, limit=PAGE_SIZE)
        return console.render(request, "chats.html", chats=page, paging=paging, q=q, owner=owner,
                              filters={"integration": integration, "customer": customer})

    @router.get("/ui/chats/{chat_id}")
    async def messages(request: Request, chat_id: str, before: str = "") -> Response:
        console.session(request)
        chat = await chat_of(chat_id)
        try:
            page, older = await store.list_messages(chat_id, cursor=before or None, limit=MESSAGES_PAGE)
        except ValueError:
            raise Refused(400, "That link to older messages is not valid.") from None
        page.reverse()  # read top to bottom, oldest of the page first
        senders = [m.sender.external_user_id for m in page if m.sender.external_user_id and not m.sender.name]
        names = await store.display_names(chat.customer_id, chat.platform, senders) if senders else {}
        return console.render(request, "messages.html", chat=chat, messages=page, names=names,
                              count=await store.count_messages(chat_id),
                              older=f"/ui/chats/{chat_id}?{urlencode({'before': older})}" if older else None,
                              newest=f"/ui/chats/{chat_id}" if before else None)

    @router.get("/ui/chats/{chat_id}/delete")
    async def confirm_delete(request: Request, chat_id: str) -> Response:
        console.session(request)
        chat = await chat_of(chat_id)
        return console.render(request, "delete_chat.html", chat=chat, count=await store.count_messages(chat_id))

    @router.post("/ui/chats/{chat_id}/delete")
    async def delete(request: Request, chat_id: str) -> Response:
        await console.form(request)
        chat = await chat_of(chat_id)
        removed = await store.delete_chat(chat_id)
        query = urlencode({"integration": chat.integration_id, "deleted": chat.name or chat.external_chat_id,
                           "removed": removed})
        return see_other(f"/ui/chats?{query}")

    @router.post("/ui/chats/{chat_id}/resync")
    async def resync(request: Request, chat_id: str) -> Response:
        fields = await console.form(request)
        chat = await chat_of(chat_id)
        await engine.resync(chat.integration_id, [chat.id], (fields.get("full") or [""])[0] == "1")
        return see_other(f"/ui/integrations/{chat.integration_id}?resync=started#progress")

    @router.get("/ui/integrations/{integration_id}/import")
    async def import_page(request: Request, integration_id: str) -> Response:
        console.session(request)
        integration = await engine.get_integration(integration_id)
        return console.render(request, "import.html", integration=integration)

    @router.get("/ui/integrations/{integration_id}/available")
    async def available(request: Request, integration_id: str, q: str = "") -> Response:
        """The platform's chats (asked of the platform, so it may take a moment): a fragment
        the import page loads, or a whole page without JavaScript."""
        console.session(request)
        integration = await engine.get_integration(integration_id)
        q = q.strip()[:MAX_SEARCH].casefold()
        listed = await engine.available_chats(integration_id)
        if q:
            listed = [c for c in listed if q in (c.name or "").casefold() or q in c.external_chat_id.casefold()]
        paging = Paging(request, len(listed))
        listed = listed[paging.skip:paging.skip + paging.size]
        known = await store.find_chats(integration.customer_id, integration.platform,
                                       [c.external_chat_id for c in listed])
        fragment = request.headers.get("hx-request") == "true"
        return console.render(request, "available.html" if fragment else "import.html", integration=integration,
                              available=listed, paging=paging,
                              known=known, q=q, loaded=True)

    @router.post("/ui/integrations/{integration_id}/import")
    async def import_chats(request: Request, integration_id: str) -> Response:
        fields = await console.form(request)
        chosen = [c for c in fields.get("externalChatId", []) if c]
        if not chosen:
            raise Refused(422, "Select at least one chat to import.")
        await engine.import_chats(integration_id, chosen[:1000])
        return see_other(f"/ui/integrations/{integration_id}?imported={len(chosen)}#progress")
