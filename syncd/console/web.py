"""What every console page shares: templates, the login guard, CSRF-checked forms, paging,
and the route class that turns refusals into pages instead of JSON."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from syncd.api.errors import engine_status
from syncd.console.session import Sessions
from syncd.engine.engine import Engine
from syncd.engine.errors import EngineError

HERE = Path(__file__).parent
PAGE_SIZE = 50
#: The longest form body the console reads (a form with a thousand chat ids fits).
MAX_FORM_BYTES = 256 * 1024


class LoginRequired(Exception):
    pass


class Refused(Exception):
    """A request the console will not do; ``status`` and a message for the person."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """``"3 min ago"``: how long since ``when``, in the largest unit that fits."""
    if when is None:
        return "never"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def humanize(name: str) -> str:
    """``botToken`` -> ``Bot token``: a credential's declared name as a label."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.replace("_", " ")).split()
    return " ".join([words[0].capitalize(), *(w if w.isupper() else w.lower() for w in words[1:])]) if words else name


def stamp(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if when else ""


class Paging:
    """Page ``number`` (from 1) of ``total`` items, ``size`` a page, with links that keep the
    other query parameters."""

    def __init__(self, request: Request, total: int, size: int = PAGE_SIZE):
        try:
            asked = int(request.query_params.get("page", "1"))
        except ValueError:
            asked = 1
        self.total, self.size = total, size
        self.pages = max(1, math.ceil(total / size))
        self.number = min(max(1, asked), self.pages)
        self.skip = (self.number - 1) * size
        self._query = {k: v for k, v in request.query_params.items() if k != "page" and v}
        self._path = request.url.path

    def link(self, number: int) -> str:
        return f"{self._path}?{urlencode({**self._query, 'page': number})}"

    @property
    def previous(self) -> str | None:
        return self.link(self.number - 1) if self.number > 1 else None

    @property
    def next(self) -> str | None:
        return self.link(self.number + 1) if self.number < self.pages else None


class Console:
    """The engine, the sessions and the templates, handed to every route module."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.store = engine.store
        self.settings = engine.ctx.settings
        self.sessions = Sessions(self.settings)
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(["html"]), trim_blocks=True,
                                     lstrip_blocks=True)
        self.templates.filters.update(ago=ago, stamp=stamp, humanize=humanize)

    def session(self, request: Request) -> str:
        """The session id of a logged-in request; ``LoginRequired`` otherwise."""
        sid = self.sessions.session_id(request)
        if sid is None:
            raise LoginRequired()
        return sid

    async def form(self, request: Request) -> dict[str, list[str]]:
        """The posted form of a logged-in person, after the origin and CSRF checks."""
        sid = self.session(request)
        if not self.sessions.same_origin(request):
            raise Refused(403, "This form was sent from another site, so it was refused.")
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise Refused(413, "The form is too large.")
        fields: dict[str, list[str]] = {}
        for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            fields.setdefault(key, []).append(value)
        if not self.sessions.csrf_ok(sid, next(iter(fields.get("csrf") or []), None)):
            raise Refused(403, "The form's security token is missing or stale: reload the page and try again.")
        return fields

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        sid = self.sessions.session_id(request)
        html = self.templates.get_template(template).render(
            request=request, csrf=self.sessions.csrf_token(sid) if sid else "", logged_in=sid is not None,
            path=request.url.path, **context)
        # No form-action: the OAuth button's form is redirected on to the platform's consent page.
        return HTMLResponse(html, status_code=status, headers={
            "cache-control": "no-store",
            "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                       "script-src 'self'; frame-ancestors 'none'",
            "x-content-type-options": "nosniff", "referrer-policy": "same-origin"})


def first(fields: dict[str, list[str]], key: str, default: str = "") -> str:
    return (fields.get(key) or [default])[0].strip()


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def console_route(console_ref: Callable[[], Console]) -> type[APIRoute]:
    """A route class whose handlers answer refusals with pages: the login page when logged
    out, an error page (never JSON) for what the person cannot do."""

    class ConsoleRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except LoginRequired:
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    if request.method != "GET":
                        target = "/ui"
                    return see_other(f"/ui/login?{urlencode({'next': target})}")
                except Refused as exc:
                    return console_ref().render(request, "error.html", status=exc.status, message=str(exc))
                except EngineError as exc:
                    return console_ref().render(request, "error.html", status=engine_status(exc), message=str(exc),
                                                details=exc.details)

            return guarded

    return ConsoleRoute
