"""get.chat's external-plugin contract, served for one integration under its plugin URL
``/plugins/getchat/{integrationId}/{pluginSecret}`` (docs.get.chat "Connect an external plugin").

get.chat signs nothing, so the secret path segment is the authentication: a wrong one is 404,
exactly like an unknown integration, and nothing is stored. Endpoints:

- ``GET /`` ``{name, type}``; ``GET /features`` (get.chat's spelling ``is_message_reciever``);
- ``GET /initialize``: ``initialized`` once the Integration API is configured and working,
  else ``authorization_needed`` (configured, but the token was refused: ``init_failed``);
- ``GET /contacts/`` and ``/contacts/{contact_id}``: the customer's accounts on their other
  platforms and their chats, with ``search`` and paging (``limit``, ``page`` / ``offset``;
  ``next_page_param`` is the next offset);
- ``POST /configure_api`` ``{api_url, api_token}``: stored as credentials, then the import starts;
- ``POST /webhook``: the WABA webhooks get.chat propagates.
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from syncd.kit.errors import SignatureError
from syncd.kit.plugins import PluginHost
from syncd.models import Chat, Integration, UserPlatform
from syncd.universal import WebhookRequest

PLATFORM = "getchat"
PREFIX = "/plugins/getchat/{integration_id}/{plugin_secret}"
#: The header that carries the path's secret to the manifest's webhook verifier.
SECRET_HEADER = "x-syncd-plugin-secret"
PAGE_SIZE, MAX_PAGE_SIZE = 50, 200
_PHONE = re.compile(r"^\+?\d{6,15}$")
#: The Integration API's own path below its host (docs: ``https://{stack}.inbox.platform.get.chat/api/v1/``).
API_PATH = "/api/v1"


def refusal(status: int, message: str) -> HTTPException:
    """An error answered as ``{"error": {"code", "message"}}`` (the code follows the status)."""
    return HTTPException(status, message)


def api_root(url: str) -> str:
    """``api_url`` as the API root: get.chat may post the host alone or the ``/api/v1/`` root."""
    url = url.strip().rstrip("/")
    return url if url.endswith(API_PATH) else url + API_PATH


def _phone(value: str | None) -> str | None:
    return value if value and _PHONE.match(value) else None


def contact_of_user(user: UserPlatform) -> dict[str, Any]:
    phone = _phone(user.external_user_id)
    return _contact(f"user:{user.platform}:{user.external_user_id}", user.display_name or user.external_user_id,
                    user.platform, phone, user.external_email)


def contact_of_chat(chat: Chat) -> dict[str, Any]:
    phone = _phone(chat.external_chat_id) if chat.kind == "dm" else None
    return _contact(f"chat:{chat.id}", chat.name or chat.external_chat_id, chat.platform, phone, None)


def _contact(contact_id: str, name: str, platform: str, phone: str | None, email: str | None) -> dict[str, Any]:
    """Every field get.chat marks mandatory, lists empty rather than absent."""
    return {
        "contact_id": contact_id, "name": name, "avatar": None, "large_avatar": None,
        "companies": [],
        "phone_numbers": [{"phone_number": phone, "description": platform}] if phone else [],
        "email_addresses": [{"email_address": email, "description": platform}] if email else [],
        "urls": [],
    }


def _matches(contact: dict[str, Any], search: str) -> bool:
    words = [contact["name"], contact["contact_id"], *(p["phone_number"] for p in contact["phone_numbers"]),
             *(e["email_address"] for e in contact["email_addresses"])]
    return any(search in str(w).lower() for w in words)


def _int(value: str | None, default: int, name: str, *, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise refusal(400, f"{name} must be a whole number") from None
    if not low <= number <= high:
        raise refusal(400, f"{name} must be between {low} and {high}")
    return number


def _page(request: Request) -> tuple[int, int]:
    """(offset, limit): ``offset`` (or ``page``, 1-based; both as ``next_page_param`` hands them out)."""
    q = request.query_params
    limit = _int(q.get("limit"), PAGE_SIZE, "limit", low=1, high=MAX_PAGE_SIZE)
    if q.get("offset") not in (None, "") or q.get("page") in (None, ""):
        return _int(q.get("offset"), 0, "offset", low=0, high=10**9), limit
    return (_int(q.get("page"), 1, "page", low=1, high=10**9) - 1) * limit, limit


async def _path(integration_id: str, plugin_secret: str) -> None:
    """Declares the prefix's path parameters (for the API's schema); ``plugin`` checks them.
    A coroutine: FastAPI runs a plain function dependency in a worker thread, on every request."""


def router(host: PluginHost) -> APIRouter:
    api = APIRouter(prefix=PREFIX, tags=["plugins"], dependencies=[Depends(_path)])

    async def plugin(request: Request) -> tuple[Integration, dict[str, Any]]:
        found = await host.integration(PLATFORM, request.path_params["integration_id"])
        given = request.path_params["plugin_secret"].encode()
        secret = str((found[1] if found else {}).get("pluginSecret") or "").encode()
        # Compared in constant time; a wrong secret answers as an unknown integration does.
        if found is None or not secret or not hmac.compare_digest(given, secret):
            raise refusal(404, "no such plugin")
        return found

    async def all_contacts(integration: Integration) -> list[dict[str, Any]]:
        users, chats = await host.contacts(integration.customer_id)
        # get.chat knows its own WhatsApp contacts: offered are the customer's other platforms.
        return ([contact_of_user(u) for u in users if not u.is_self and u.platform != PLATFORM]
                + [contact_of_chat(c) for c in chats if c.platform != PLATFORM])

    def provider(integration: Integration) -> dict[str, Any]:
        return {"type": "syncd", "name": integration.name or "syncd", "id": integration.id}

    # First: routes are matched in the order they are declared, and deliveries are the hot path.
    @api.post("/webhook")
    async def webhook(request: Request) -> Response:
        # The path's secret goes where the manifest's verifier reads it, which compares it with
        # the connector's credentials (cached) in constant time: no credentials read from the
        # store per delivery. A wrong secret answers as an unknown integration does.
        integration = await host.live(PLATFORM, request.path_params["integration_id"])
        if integration is None:
            raise refusal(404, "no such plugin")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]}
        headers[SECRET_HEADER] = request.path_params["plugin_secret"]
        # The URL is built only if the manifest's verifier reads it.
        delivery = WebhookRequest(method="POST", url=lambda: str(request.url), headers=headers,
                                  query=dict(request.query_params), body=await request.body())
        try:
            answer = await host.deliver(integration, delivery)
        except SignatureError:
            raise refusal(404, "no such plugin") from None
        if isinstance(answer.body, dict):
            return JSONResponse(answer.body, status_code=answer.status_code, headers=answer.headers)
        return Response(answer.body or b"", status_code=answer.status_code, media_type=answer.media_type,
                        headers=answer.headers)

    @api.get("/")
    async def index(request: Request) -> dict[str, Any]:
        integration, _ = await plugin(request)
        return {"name": integration.name or "syncd", "type": "syncd"}

    @api.get("/features")
    async def features(request: Request) -> dict[str, Any]:
        await plugin(request)
        return {"is_contact_provider": True, "is_message_reciever": True, "is_message_sender": True}

    @api.get("/initialize")
    async def initialize(request: Request) -> dict[str, Any]:
        integration, credentials = await plugin(request)
        if not credentials.get("apiUrl") or not credentials.get("apiToken"):
            # get.chat posts the API to /configure_api; nothing to authorise by hand.
            return {"status": "authorization_needed",
                    "authorization_needed": {"method": "configure_api", "external_url": ""}}
        if integration.status != "active":
            return {"status": "init_failed",
                    "error_message": integration.status_reason or "the Integration API refused the token"}
        return {"status": "initialized"}

    @api.get("/contacts/")
    async def contacts(request: Request) -> dict[str, Any]:
        integration, _ = await plugin(request)
        offset, limit = _page(request)
        found = await all_contacts(integration)
        search = (request.query_params.get("search") or "").strip().lower()
        if search:
            found = [c for c in found if _matches(c, search)]
        page = found[offset:offset + limit]
        more = offset + limit < len(found)
        return {"results": page, "count": len(found), "next_page_param": str(offset + limit) if more else "",
                "contact_provider": provider(integration)}

    @api.get("/contacts/{contact_id}")
    async def contact(request: Request, contact_id: str) -> dict[str, Any]:
        integration, _ = await plugin(request)
        digits = contact_id.lstrip("+")
        found = [c for c in await all_contacts(integration) if c["contact_id"] == contact_id
                 or any(p["phone_number"].lstrip("+") == digits for p in c["phone_numbers"])]
        # An unknown contact is an empty result, not an error: get.chat asks about every chat.
        return {"results": found[:1], "count": len(found[:1]), "next_page_param": "",
                "contact_provider": provider(integration)}

    @api.post("/configure_api")
    async def configure_api(request: Request) -> Response:
        integration, credentials = await plugin(request)
        body = _json_object(await request.body())
        url, token = body.get("api_url"), body.get("api_token")
        if not isinstance(url, str) or not isinstance(token, str) or "None" in (url, token) or not url or not token:
            raise refusal(422, "api_url and api_token are required: get.chat sends 'None' when the plugin may "
                          "not use the Integration API")
        await host.configure(integration.id, {**credentials, "apiUrl": api_root(url), "apiToken": token})
        return JSONResponse(None)

    return api


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise refusal(400, "body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise refusal(400, "body must be a JSON object")
    return parsed
