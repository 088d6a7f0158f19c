"""Swagger UI at /docs loads everything from the daemon itself: no CDN, so it works offline."""

from __future__ import annotations

import re


async def test_the_docs_page_loads_its_assets_from_the_daemon(tb):
    page = await tb.api.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/") for s in sources if s), sources
    for asset in ("/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"):
        assert asset in sources
        answer = await tb.api.get(asset)
        assert answer.status_code == 200 and len(answer.content) > 10_000
    assert (await tb.api.get("/docs/static/../../config.py")).status_code == 404
    assert (await tb.api.get("/openapi.json")).json()["info"]["title"] == "syncd"
