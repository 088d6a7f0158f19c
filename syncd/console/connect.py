"""Connecting an integration: a credentials form generated from the platform's declared
schema (secrets in password fields), or the platform's OAuth flow where the operator
configured its app. The page after saving says what to set up at the platform."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from syncd.api.connect import link_signature
from syncd.api.errors import engine_status
from syncd.console import platforms
from syncd.console.web import Console, Refused, first, see_other
from syncd.engine.errors import EngineError

#: How long the signed link behind the console's OAuth button stays usable.
OAUTH_LINK_S = 300


def add_connect(router: APIRouter, console: Console) -> None:
    engine = console.engine

    def described(platform: str) -> dict[str, Any]:
        try:
            return platforms.describe(engine, platform)
        except KeyError:
            raise Refused(404, f"There is no platform named {platform!r}.") from None

    @router.get("/ui/connect")
    async def choose(request: Request) -> Response:
        console.session(request)
        return console.render(request, "connect_choose.html",
                              platforms=[platforms.describe(engine, p) for p in platforms.names(engine)])

    @router.get("/ui/connect/{platform}")
    async def form(request: Request, platform: str, customer: str = "") -> Response:
        console.session(request)
        return console.render(request, "connect_form.html", platform=described(platform),
                              values={"customerId": customer}, oauth_ready=_oauth_ready(console))

    @router.post("/ui/connect/{platform}")
    async def create(request: Request, platform: str) -> Response:
        fields = await console.form(request)
        description = described(platform)
        customer, name = first(fields, "customerId"), first(fields, "name")
        credentials = {c["name"]: first(fields, f"credentials.{c['name']}") for c in description["credentials"]}
        credentials = {k: v for k, v in credentials.items() if v}
        # Only what the person typed in plain fields is put back into a form shown again.
        typed = {"customerId": customer, "name": name,
                 **{c["name"]: credentials.get(c["name"], "") for c in description["credentials"] if not c["secret"]}}
        if not customer:
            return console.render(request, "connect_form.html", status=422, platform=description, values=typed,
                                  error="Give the customer id this integration belongs to.",
                                  oauth_ready=_oauth_ready(console))
        try:
            integration = await engine.create_integration(platform=platform, customer_id=customer, name=name or None,
                                                          credentials=credentials, settings=None)
        except EngineError as exc:
            return console.render(request, "connect_form.html", status=engine_status(exc), platform=description,
                                  values=typed, error=str(exc), details=exc.details,
                                  oauth_ready=_oauth_ready(console))
        generated = await _generated(console, integration.id, description)
        return console.render(request, "connected.html", integration=integration, platform=description,
                              webhook_url=console.settings.webhook_url(platform, integration.id),
                              generated=generated)

    @router.post("/ui/connect/{platform}/oauth")
    async def oauth(request: Request, platform: str) -> Response:
        fields = await console.form(request)
        description = described(platform)
        customer = first(fields, "customerId")
        if not description["capabilities"].get("oauth"):
            raise Refused(404, f"{description['title']} has no OAuth app configured.")
        if not customer:
            raise Refused(422, "Give the customer id this integration belongs to.")
        secret = console.settings.app_webhook_secret
        if secret is None:
            raise Refused(503, "Set SYNCD_APP_WEBHOOK_SECRET: it signs the link that starts the OAuth flow.")
        expires = int(time.time()) + OAUTH_LINK_S
        query = {"customerId": customer, "expires": expires,
                 "signature": link_signature(secret.get_secret_value(), platform, customer, expires)}
        if first(fields, "name"):
            query["name"] = first(fields, "name")
        return see_other(f"/connect/{platform}?{urlencode(query)}")

    @router.get("/ui/connected")
    async def connected(request: Request, integrationId: str = "") -> Response:
        """Where an OAuth flow lands when ``SYNCD_CONNECT_SUCCESS_URL`` points here."""
        console.session(request)
        integration = await engine.get_integration(integrationId)
        return console.render(request, "connected.html", integration=integration,
                              platform=described(integration.platform),
                              webhook_url=console.settings.webhook_url(integration.platform, integration.id),
                              generated={})


def _oauth_ready(console: Console) -> bool:
    return console.settings.app_webhook_secret is not None


async def _generated(console: Console, integration_id: str, description: dict[str, Any]) -> dict[str, str]:
    """The values syncd generated that the person must paste at the platform (a verify token,
    a webhook secret), shown once on the page right after connecting and never again."""
    names = [c["name"] for c in description["credentials"] if c["generated"]]
    if not names:
        return {}
    stored = await console.store.get_credentials(integration_id)
    return {name: str(stored[name]) for name in names if stored.get(name)}
