"""Login, the overview (or the onboarding when nothing is connected yet), the integrations
list and one integration's page with its import progress."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from syncd.console import platforms
from syncd.console.health import health_of
from syncd.console.session import COOKIE, MAX_AGE_S
from syncd.console.web import PAGE_SIZE, Console, Paging, Refused, first, see_other

STATUSES = ("active", "paused", "error")


def _safe_next(target: str | None) -> str:
    """Only a path of the console itself: never another site."""
    if target and target.startswith("/ui") and not target.startswith("//"):
        return target
    return "/ui"


def add_pages(router: APIRouter, console: Console) -> None:
    store = console.store

    @router.get("/ui/login")
    async def login_page(request: Request, next: str | None = None) -> Response:
        if console.sessions.session_id(request):
            return see_other(_safe_next(next))
        return console.render(request, "login.html", next=_safe_next(next),
                              enabled=console.sessions.enabled)

    @router.post("/ui/login")
    async def login(request: Request) -> Response:
        if not console.sessions.same_origin(request):
            raise Refused(403, "This form was sent from another site, so it was refused.")
        fields = dict(parse_qsl((await request.body())[:8192].decode("utf-8", "replace")))
        target = _safe_next(fields.get("next"))
        if not console.sessions.enabled:
            raise Refused(503, "Set SYNCD_ADMIN_TOKEN to use the console.")
        if not console.sessions.token_ok(fields.get("token", "")):
            return console.render(request, "login.html", status=401, next=target, enabled=True,
                                  error="That is not the admin token.")
        response = see_other(target)
        response.set_cookie(COOKIE, console.sessions.issue(), max_age=MAX_AGE_S,
                            **console.sessions.cookie_options(request))
        return response

    @router.post("/ui/logout")
    async def logout(request: Request) -> Response:
        await console.form(request)
        response = see_other("/ui/login")
        response.delete_cookie(COOKIE, **console.sessions.cookie_options(request))
        return response

    @router.get("/ui")
    async def overview(request: Request) -> Response:
        console.session(request)
        _, total = await store.page_integrations(limit=1)
        if total == 0:
            return console.render(request, "onboarding.html")
        paging = Paging(request, total)
        page, _ = await store.page_integrations(skip=paging.skip, limit=PAGE_SIZE)
        healths = await health_of(store, page)
        levels = {level: sum(1 for h in healths if h.level == level) for level in ("ok", "busy", "warn", "bad")}
        return console.render(request, "overview.html", healths=healths, paging=paging, levels=levels,
                              dead=(await store.outbox_counts()).get("dead", 0),
                              failed=(await store.inbox_counts()).get("failed", 0))

    @router.get("/ui/integrations")
    async def integrations(request: Request, customer: str = "", platform: str = "", status: str = "") -> Response:
        console.session(request)
        status = status if status in STATUSES else ""
        _, total = await store.page_integrations(customer_id=customer, platform=platform, status=status, limit=1)
        paging = Paging(request, total)
        page, _ = await store.page_integrations(customer_id=customer, platform=platform, status=status,
                                                skip=paging.skip, limit=PAGE_SIZE)
        return console.render(request, "integrations.html", healths=await health_of(store, page), paging=paging,
                              platforms=platforms.names(console.engine), statuses=STATUSES,
                              filters={"customer": customer, "platform": platform, "status": status})

    @router.get("/ui/integrations/{integration_id}")
    async def integration(request: Request, integration_id: str) -> Response:
        console.session(request)
        found = await console.engine.get_integration(integration_id)
        health = (await health_of(store, [found]))[0]
        description = _description(console, found.platform)
        return console.render(request, "integration.html", health=health, integration=found,
                              platform=description, listener=await console.engine.listeners.view(found),
                              webhook_url=console.settings.webhook_url(found.platform, found.id),
                              **await _progress(console, request, integration_id))

    @router.get("/ui/integrations/{integration_id}/progress")
    async def progress(request: Request, integration_id: str) -> Response:
        console.session(request)
        await console.engine.get_integration(integration_id)
        return console.render(request, "progress.html", integration_id=integration_id,
                              **await _progress(console, request, integration_id))

    @router.post("/ui/integrations/{integration_id}/resync")
    async def resync(request: Request, integration_id: str) -> Response:
        fields = await console.form(request)
        chat_ids = [c for c in fields.get("chatId", []) if c] or None
        await console.engine.resync(integration_id, chat_ids, first(fields, "full") == "1")
        return see_other(f"/ui/integrations/{integration_id}?{urlencode({'resync': 'started'})}#progress")


def _description(console: Console, platform: str) -> dict | None:
    try:
        return platforms.describe(console.engine, platform)
    except KeyError:
        return None


async def _progress(console: Console, request: Request, integration_id: str) -> dict:
    """Each chat's import: phase, pages and messages, a page of chats at a time."""
    _, total = await console.store.page_chat_statuses(integration_id, limit=1)
    paging = Paging(request, total)
    statuses, _ = await console.store.page_chat_statuses(integration_id, skip=paging.skip, limit=PAGE_SIZE)
    chats = {}
    for status in statuses:
        chat = await console.store.get_chat(status.chat_id) if status.chat_id else None
        if chat is not None:
            chats[chat.id] = chat
    working = any(s.phase in ("pending", "importing") for s in statuses)
    return {"statuses": statuses, "chats_by_id": chats, "progress_paging": paging, "working": working}
