"""The app factory: every area of the API, one line each."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from syncd.api.access_log import AccessLog
from syncd.api.auth import admin_dependency
from syncd.api.chats import chats_router, user_platforms_router
from syncd.api.connect import connect_router
from syncd.api.deadletters import deadletters_router
from syncd.api.docs import docs_router
from syncd.api.errors import install_error_handlers
from syncd.api.events import SIGNATURE_SCHEME, event_schemas, events_router
from syncd.api.health import health_router
from syncd.api.integrations import integrations_router
from syncd.api.limits import BodyLimit
from syncd.api.openapi import SIGNATURE_SECURITY, openapi_builder
from syncd.api.platforms import platforms_router
from syncd.api.plugins import plugins_router
from syncd.api.smooch import smooch_router
from syncd.api.webhooks import (
    SHARED_WEBHOOK_PATH,
    WEBHOOK_PATH,
    add_webhook_route,
    shared_webhook_operations,
    webhook_operations,
)
from syncd.console import console_router
from syncd.engine.engine import Engine


def create_app(engine: Engine) -> FastAPI:
    app = FastAPI(title="syncd", version="0.1.0", docs_url=None, redoc_url=None,
                  description="Two-way message sync between your app and messaging platforms.")
    app.add_middleware(BodyLimit, max_bytes=engine.ctx.settings.max_body_bytes)
    # Added last, so it wraps the body limit: a refused body is logged like any answer.
    app.add_middleware(AccessLog, enabled=engine.ctx.settings.access_log)
    install_error_handlers(app)
    settings = engine.ctx.settings

    # First: the routes are matched in order, and platform deliveries are the hot path (the
    # platforms' plugin routes take deliveries too).
    add_webhook_route(app, engine)
    app.include_router(plugins_router(engine))
    app.include_router(platforms_router(engine.ctx.connectors, settings, [Depends(admin_dependency(settings))]))
    app.include_router(health_router(engine))
    app.include_router(integrations_router(engine))
    app.include_router(smooch_router(engine))
    app.include_router(chats_router(engine))
    app.include_router(user_platforms_router(engine))
    app.include_router(events_router(engine))
    app.include_router(deadletters_router(engine))
    app.include_router(connect_router(engine))
    app.include_router(console_router(engine))
    app.include_router(docs_router())

    app.openapi = openapi_builder(  # type: ignore[method-assign]
        app, extra_paths={WEBHOOK_PATH: webhook_operations(),
                          SHARED_WEBHOOK_PATH: shared_webhook_operations()}, extra_schemas=event_schemas(),
        extra_security={SIGNATURE_SCHEME: SIGNATURE_SECURITY})
    return app
