"""Liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from syncd import metrics
from syncd.api.auth import GuardedRoute
from syncd.api.errors import error_body
from syncd.engine.engine import Engine


def health_router(engine: Engine) -> APIRouter:
    router = APIRouter(route_class=GuardedRoute, tags=["health"])
    store = engine.store

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        mongo = await store.ping()
        workers = engine.workers_running
        body: dict[str, Any] = {"status": "ready" if mongo and workers else "not ready",
                                "mongodb": mongo, "workers": workers}
        if not (mongo and workers):
            failing = [name for name, ok in (("MongoDB is not reachable", mongo), ("workers are not running", workers))
                       if not ok]
            body.update(error_body("not_ready", "; ".join(failing)))
        return JSONResponse(body, status_code=200 if mongo and workers else 503)

    @router.get("/metrics")
    async def metrics_endpoint() -> Response:
        inbox, outbox = await store.inbox_counts(), await store.outbox_counts()
        metrics.INBOX_PENDING.set(inbox.get("pending", 0))
        metrics.INBOX_FAILED.set(inbox.get("failed", 0))
        metrics.OUTBOX_PENDING.set(outbox.get("queued", 0) + outbox.get("sending", 0))
        metrics.OUTBOX_DEAD.set(outbox.get("dead", 0))
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    return router
