"""Dead-lettered app events and failed webhook deliveries with their errors, and a retry
button that puts one back in its queue. Payloads are not shown: they may carry secrets."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from syncd.console.web import PAGE_SIZE, Console, Paging, Refused, see_other

#: Errors are cut to this many characters on the page.
MAX_ERROR = 500


def add_failures(router: APIRouter, console: Console) -> None:
    store = console.store

    @router.get("/ui/failures")
    async def failures(request: Request) -> Response:
        console.session(request)
        _, dead_total = await store.page_dead_events(limit=1)
        _, failed_total = await store.page_failed_deliveries(limit=1)
        paging = Paging(request, max(dead_total, failed_total))
        events, _ = await store.page_dead_events(skip=paging.skip, limit=PAGE_SIZE)
        deliveries, _ = await store.page_failed_deliveries(skip=paging.skip, limit=PAGE_SIZE)
        return console.render(request, "failures.html", events=events, deliveries=deliveries, paging=paging,
                              dead_total=dead_total, failed_total=failed_total, max_error=MAX_ERROR)

    @router.post("/ui/failures/events/{item_id}/retry")
    async def retry_event(request: Request, item_id: str) -> Response:
        await console.form(request)
        if not await store.requeue_dead_event(item_id):
            raise Refused(404, "That event is not dead-lettered (any more).")
        console.engine.outbox.events.wake()
        return see_other("/ui/failures?retried=event")

    @router.post("/ui/failures/deliveries/{item_id}/retry")
    async def retry_delivery(request: Request, item_id: str) -> Response:
        await console.form(request)
        if not await store.requeue_failed_delivery(item_id):
            raise Refused(404, "That delivery has not failed (any more).")
        return see_other("/ui/failures?retried=delivery")
