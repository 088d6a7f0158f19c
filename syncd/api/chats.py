"""Chats and their messages, as stored; user platforms (who is who on each platform)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from syncd.api.auth import GuardedRoute, admin_dependency
from syncd.api.bodies import UserPlatformIn, view
from syncd.api.errors import ApiError
from syncd.engine.engine import Engine
from syncd.engine.notifier import message_view
from syncd.models import Chat, UserPlatform


def chats_router(engine: Engine) -> APIRouter:
    store = engine.store
    router = APIRouter(route_class=GuardedRoute, tags=["chats"], dependencies=[Depends(admin_dependency(engine.ctx.settings))])

    async def known(chat_id: str) -> Chat:
        chat = await store.get_chat(chat_id)
        if chat is None:
            raise ApiError(404, "not_found", f"no chat {chat_id!r}")
        return chat

    @router.get("/chats")
    async def list_chats(customerId: str | None = None, integrationId: str | None = None) -> dict[str, Any]:
        if customerId is None and integrationId is None:
            raise ApiError(400, "bad_request", "give customerId or integrationId")
        chats = await store.list_chats(customer_id=customerId, integration_id=integrationId)
        return {"chats": [view(c) for c in chats]}

    @router.get("/chats/{chat_id}/messages")
    async def list_messages(
        chat_id: str, cursor: str | None = None, limit: int = Query(default=50, ge=1, le=500)
    ) -> dict[str, Any]:
        await known(chat_id)
        try:
            messages, next_cursor = await store.list_messages(chat_id, cursor=cursor, limit=limit)
        except ValueError:
            raise ApiError(400, "bad_request", "invalid cursor") from None
        return {"messages": [message_view(m) for m in messages], "nextCursor": next_cursor}

    @router.delete("/chats/{chat_id}")
    async def delete_chat(chat_id: str) -> dict[str, Any]:
        await known(chat_id)
        removed = await store.delete_chat(chat_id)
        return {"deleted": {"chatId": chat_id, "messages": removed}}

    return router


def user_platforms_router(engine: Engine) -> APIRouter:
    store = engine.store
    router = APIRouter(route_class=GuardedRoute, tags=["user platforms"], dependencies=[Depends(admin_dependency(engine.ctx.settings))])

    @router.put("/user-platforms")
    async def put_user_platform(body: UserPlatformIn) -> dict[str, Any]:
        stored = await store.upsert_user_platform(UserPlatform(**body.model_dump()))
        return {"userPlatform": view(stored)}

    @router.get("/user-platforms")
    async def list_user_platforms(customerId: str, platform: str | None = None) -> dict[str, Any]:
        found = await store.list_user_platforms(customerId, platform)
        return {"userPlatforms": [view(u) for u in found]}

    return router
