"""The web console at ``/ui``: pages rendered on the server for the people who run syncd and
use it, with htmx (vendored in ``static/``) for partial updates. No platform is named here:
platform-specific parts of a page come from :func:`syncd.console.platforms.describe`.

Mounted by the API with ``app.include_router(console_router(engine))``.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from syncd.console.chats import add_chats
from syncd.console.connect import add_connect
from syncd.console.failures import add_failures
from syncd.console.pages import add_pages
from syncd.console.web import HERE, Console, Refused, console_route

STATIC = {"htmx.min.js": "text/javascript", "console.js": "text/javascript", "console.css": "text/css"}


def console_router(engine) -> APIRouter:
    console = Console(engine)
    router = APIRouter(include_in_schema=False, route_class=console_route(lambda: console))

    @router.get("/ui/static/{name}")
    async def static(request: Request, name: str) -> Response:
        if name not in STATIC:
            raise Refused(404, "No such file.")
        return FileResponse(HERE / "static" / name, media_type=STATIC[name],
                            headers={"cache-control": "public, max-age=3600"})

    add_pages(router, console)
    add_connect(router, console)
    add_chats(router, console)
    add_failures(router, console)
    return router
