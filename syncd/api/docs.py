"""``/docs``: Swagger UI served from assets inside the package (swagger-ui-dist 5.35.0, Apache
2.0, see ``syncd/console/static/swagger-ui-LICENSE.txt``; vendored beside the console's assets), so it works on a machine with no internet."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from syncd.api.errors import ApiError

STATIC = Path(__file__).resolve().parents[1] / "console" / "static"
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}


def docs_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="syncd API",
                                   swagger_js_url="/docs/static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/static/swagger-ui.css", swagger_favicon_url="")

    @router.get("/docs/static/{name}")
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise ApiError(404, "not_found", f"no asset {name!r}")
        return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"cache-control": "public, max-age=86400"})

    return router
