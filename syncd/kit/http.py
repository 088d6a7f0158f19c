"""The shared HTTP layer of every connector: a per-integration face (auth, headers, rate
budget, secrets) over an httpx client shared by every integration, a retry and rate-limit
policy, and a paginator guard.

A connector passes a ``classify`` hook that turns a platform's answer into an exception from
``errors.py`` (e.g. an HTTP 200 with ``ok: false``); this module retries what is
retryable (429 waited out for its Retry-After, 5xx and network faults with exponential
backoff), a bounded number of times, and re-raises the last error when the budget is spent so
the engine can reschedule the work instead of dropping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
import http.cookiejar
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

import httpx

from syncd import metrics
from syncd.kit.errors import (
    AuthError,
    OutcomeUnknown,
    PermanentError,
    ProviderError,
    RateLimited,
    RetryableError,
    TransientError,
    scrub_exception,
)
from syncd.kit.transport import AiohttpTransport
from syncd.logs import SecretValues

_OUTCOMES: dict[type, str] = {RateLimited: "rate_limited", TransientError: "transient", AuthError: "auth"}

T = TypeVar("T")

Classifier = Callable[[httpx.Response], None]
#: Called before each request to add auth (e.g. a bearer token refreshed on expiry).
Authenticator = Callable[[httpx.Request], Awaitable[None]]


#: The lane of the requests made in this task: ``live`` (webhooks, polls, sends, imports) or
#: ``background`` (a periodic full sync), which takes what live requests leave of the budget.
_LANE: contextvars.ContextVar[str] = contextvars.ContextVar("syncd_http_lane", default="live")


@contextlib.contextmanager
def background_lane() -> Iterator[None]:
    """Requests made inside are background work: one at a time per client, each waiting until
    no live request of the client is in flight and no 429 is being waited out. A full re-read
    of every chat thus never holds back the webhooks, polls and sends of its integration."""
    token = _LANE.set("background")
    try:
        yield
    finally:
        _LANE.reset(token)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def default_classify(response: httpx.Response) -> None:
    """Status-code classification shared by REST platforms."""
    status = response.status_code
    if status < 400:
        return
    if status == 429:
        raise RateLimited(
            "rate limited (429)",
            status=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if status == 401:
        raise AuthError("credentials rejected (401)", status=status)
    if status >= 500 or status == 408:
        raise TransientError(f"server error ({status})", status=status)
    raise PermanentError(f"request failed ({status})", status=status)


_DOT_SEGMENTS = frozenset({".", "..", "%2e", "%2e%2e", ".%2e", "%2e."})


def refuse_escaping(url: str, name: str) -> None:
    """An id that became part of a path (a page id of ``../../escape``, ``x#frag``) must not
    move the request elsewhere on the platform's host, carrying the integration's token:
    dot segments, a fragment, and backslashes are refused before anything is sent."""
    # The string as written: parsing it (httpx too) would already have resolved the dots.
    path = url.split("?")[0]
    if "#" in url or "\\" in url or any(seg.lower() in _DOT_SEGMENTS for seg in path.split("/")):
        raise PermanentError(f"{name}: refused a request whose path escapes its template (an id with "
                             "'/', '..', '#' or '\\' in it)")


class RetryPolicy:
    """How many times and how long to wait; shared by every connector of one daemon."""

    def __init__(
        self,
        max_retries: int = 5,
        base_s: float = 0.5,
        max_s: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_inline_wait_s: float = float("inf"),
    ):
        self.max_retries = max_retries
        self.max_inline_wait_s = max_inline_wait_s
        self.base_s = base_s
        self.max_s = max_s
        self.sleep = sleep

    def wait_for(self, error: BaseException, attempt: int) -> float:
        if isinstance(error, RateLimited) and error.retry_after is not None:
            # The platform said how long; waiting less only earns another 429.
            return min(error.retry_after, self.max_s)
        backoff = min(self.max_s, self.base_s * (2 ** (attempt - 1)))
        return backoff * (0.5 + random.random() / 2)


_TLS: ssl.SSLContext | None = None


def shared_tls() -> ssl.SSLContext:
    """One TLS context for every client of the process. Building one loads the CA bundle:
    ~20 ms of blocked event loop and ~0.8 MB each, which a daemon holding a client per
    integration would pay a thousand times over."""
    global _TLS
    if _TLS is None:
        _TLS = httpx.create_ssl_context()
    return _TLS


#: Shared clients by event loop, then by (timeout, transport): see :func:`shared_client`.
_CLIENTS: dict[int, tuple[asyncio.AbstractEventLoop, dict[tuple[str, float, int], SharedClient]]] = {}

#: One integration's requests in flight at most (each client had a pool of 20 of its own).
PER_INTEGRATION_CONNECTIONS = 20


def _no_cookies() -> http.cookiejar.CookieJar:
    """A jar that keeps nothing: a client serves many integrations, and a cookie one of them
    was given must never go out with another's requests."""
    # The jar itself: httpx copies an ``httpx.Cookies`` into a jar of the default policy.
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class SharedClient(httpx.AsyncClient):
    """An httpx client that names its transport: ``ProviderHttp`` builds requests with the
    client (its timeout and default headers) and sends them through ``wire`` itself."""

    def __init__(self, timeout_s: float, transport: httpx.AsyncBaseTransport | None):
        #: A test's transport, else the network (``transport.py``: no cap on connections,
        #: since a listener's long poll holds one for its whole wait and thousands of them
        #: must not starve the polls).
        self.wire = transport or AiohttpTransport(shared_tls())
        super().__init__(timeout=timeout_s, transport=self.wire, cookies=_no_cookies(),
                         headers={"user-agent": "syncd"})


def shared_client(origin: str, timeout_s: float,
                  transport: httpx.AsyncBaseTransport | None) -> SharedClient | None:
    """The running loop's client for a platform root's ``origin`` (its own pool of
    connections), ``timeout_s`` and ``transport``; None outside an event loop.

    With a client per integration every integration held its own pool, and its kept-alive
    connection expired between two polls (httpx keeps one 5 s): each poll paid a new TCP
    (and TLS) connection, ~30 % of a polling daemon's CPU, and memory per integration.
    Authentication, headers, the rate budget and the secrets stay per integration
    (:class:`ProviderHttp`); cookies are kept by no one."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    for loop_id, (other, _) in list(_CLIENTS.items()):
        if other.is_closed():
            del _CLIENTS[loop_id]
    clients = _CLIENTS.setdefault(id(loop), (loop, {}))[1]
    key = (origin, timeout_s, id(transport))
    client = clients.get(key)
    if client is None or client.is_closed:
        client = clients[key] = SharedClient(timeout_s, transport)
    return client


async def close_shared_clients() -> None:
    """Close the running loop's shared clients (a daemon that stops)."""
    entry = _CLIENTS.pop(id(asyncio.get_running_loop()), None)
    for client in (entry[1].values() if entry else ()):
        await client.aclose()


class ProviderHttp:
    """One integration's requests to one platform root, with retries and error
    classification, over the loop's shared httpx client (its own client when made outside an
    event loop).

    Error messages name the method and the path template only: URLs can carry tokens
    (a bot token can sit in the path), so they never reach logs or exceptions.
    """

    def __init__(
        self,
        base_url: str,
        *,
        classify: Classifier = default_classify,
        authenticate: Authenticator | None = None,
        policy: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
        platform: str = "",
        auth: httpx.Auth | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        #: Label of this client's calls in ``syncd_provider_requests_total``.
        self.platform = platform
        self.classify = classify
        self.authenticate = authenticate
        #: An ``httpx.Auth`` (a manifest's declared authentication), applied to every request.
        self.auth = auth
        self.policy = policy or RetryPolicy()
        #: Sent with every request of this integration (the client's own are shared).
        self.headers = {"user-agent": "syncd", **(headers or {})}
        #: The client these were merged for, its headers with this integration's over them,
        #: and its timeout (see ``_build``).
        self._defaults: tuple[httpx.AsyncClient, httpx.Headers, dict[str, Any]] | None = None
        origin = httpx.URL(self.base_url)
        self._client_key = (f"{origin.scheme}://{origin.netloc.decode()}", timeout_s, transport)
        shared = shared_client(*self._client_key)
        self._owns_client = shared is None
        self.client = shared or SharedClient(timeout_s, transport)
        self._slots = asyncio.Semaphore(PER_INTEGRATION_CONNECTIONS)
        self.calls = 0
        #: This integration's secret values (its credentials, what it refreshed, whatever it
        #: sent as ``Authorization``): scrubbed from every error a platform answers.
        self.secrets = SecretValues()
        #: Set while a request waits out a 429's Retry-After: the others wait with it.
        self._pause: asyncio.Event | None = None
        #: Live requests in flight, and the background lane's one slot (see ``background_lane``).
        self._live = 0
        self._live_idle = asyncio.Event()
        self._live_idle.set()
        self._background = asyncio.Semaphore(1)

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        label: str | None = None,
        classify: Classifier | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send ``method path`` (relative to the base URL, or absolute) with retries.

        ``label`` names the call in errors instead of the path (use it when the path holds a
        secret). Raises a ``ProviderError`` once retries are spent or the error is permanent.
        """
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        name = label or f"{method} {path.split('?')[0]}"
        refuse_escaping(url, name)
        check = classify or self.classify
        # A plain loop, not tenacity: its per-request objects (retrying state, attempt managers,
        # futures) were a visible share of every poll's CPU and of the memory of polls in hand.
        # A 429 closes the gate for every request of this client (one integration's budget):
        # the one that got it waits exactly its Retry-After, the others wait with it instead
        # of each collecting a 429 of their own, and all go again when the window reopens.
        holding: asyncio.Event | None = None
        attempt = 0
        try:
            while True:
                attempt += 1
                if holding is not None:
                    self._reopen(holding)
                    holding = None
                try:
                    return await self._once(method, url, name, check, kwargs)
                except Exception as exc:
                    if isinstance(exc, RateLimited) and self._pause is None and self._worth_waiting(exc):
                        holding = self._pause = asyncio.Event()
                    if attempt > self.policy.max_retries or not self._retry(exc, method):
                        raise
                    error: BaseException = exc
                await self.policy.sleep(self.policy.wait_for(error, attempt))
        finally:
            if holding is not None:
                self._reopen(holding)

    def _retry(self, error: BaseException, method: str) -> bool:
        # A POST whose answer was lost may have been acted on: not sent again blindly.
        return self._worth_waiting(error) and not (isinstance(error, OutcomeUnknown) and method.upper() == "POST")

    def _reopen(self, pause: asyncio.Event) -> None:
        pause.set()
        if self._pause is pause:
            self._pause = None

    def _worth_waiting(self, error: BaseException) -> bool:
        """Retry here only for short waits: a platform that asks for minutes gets the error
        back, so the engine reschedules the work (honouring Retry-After) instead of holding
        a worker asleep."""
        if isinstance(error, RateLimited) and (error.retry_after or 0) > self.policy.max_inline_wait_s:
            return False
        return isinstance(error, RetryableError)

    async def _once(
        self, method: str, url: str, name: str, check: Classifier, kwargs: dict[str, Any]
    ) -> httpx.Response:
        if _LANE.get() == "background":
            async with self._background:
                while self._pause is not None or self._live:
                    await (self._pause.wait() if self._pause is not None else self._live_idle.wait())
                return await self._send(method, url, name, check, kwargs)
        while self._pause is not None:
            await self._pause.wait()
        self._live += 1
        self._live_idle.clear()
        try:
            return await self._send(method, url, name, check, kwargs)
        finally:
            self._live -= 1
            if not self._live:
                self._live_idle.set()

    async def _send(
        self, method: str, url: str, name: str, check: Classifier, kwargs: dict[str, Any]
    ) -> httpx.Response:
        if self.client.is_closed and not self._owns_client:  # the loop's clients were closed
            self.client = shared_client(*self._client_key) or self.client
        url, kwargs = with_query(url, kwargs)
        request = self._build(method, url, kwargs)
        if self.authenticate is not None:
            await self.authenticate(request)
        self._remember_auth(request)
        self.calls += 1
        try:
            async with self._slots:
                response = await self._exchange(request)
        except (httpx.ConnectTimeout, httpx.PoolTimeout):
            self._count("transient")
            raise TransientError(f"{name}: timed out") from None
        except httpx.TimeoutException:
            self._count("transient")
            raise OutcomeUnknown(f"{name}: timed out waiting for the answer") from None
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            self._count("transient")
            raise OutcomeUnknown(f"{name}: connection lost before the answer ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            self._count("transient")
            # Not chained: httpx's message and request carry the full URL.
            raise TransientError(f"{name}: connection failed ({type(exc).__name__})") from None
        try:
            check(response)
        except ProviderError as exc:
            self._count(_OUTCOMES.get(type(exc), "permanent"))
            exc.args = (f"{name}: {exc.args[0]}",)
            scrub_exception(exc, self.secrets)
            raise
        self._count("ok")
        return response

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        """``request`` through the client's transport, with this integration's ``httpx.Auth``:
        what ``AsyncClient.send`` does, less what costs a platform request CPU and is never
        used here (redirects are not followed, cookies are kept by no one, no event hooks)."""
        if self.auth is None:
            return await self._round_trip(request)
        await request.aread()  # an auth that signs the body reads it
        flow = self.auth.async_auth_flow(request)
        try:
            request = await flow.__anext__()
            while True:
                response = await self._round_trip(request)
                try:
                    request = await flow.asend(response)
                except StopAsyncIteration:
                    return response
        finally:
            await flow.aclose()

    async def _round_trip(self, request: httpx.Request) -> httpx.Response:
        response = await self.client.wire.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _build(self, method: str, url: str, kwargs: dict[str, Any]) -> httpx.Request:
        """The request ``client.build_request`` would make: the client's headers, this
        integration's over them, the call's over those, and the client's timeout. Built here
        for the calls every poll makes (an absolute URL, headers and a body at most): the
        client merges cookies, params and a base URL that are never used here, and copies
        every header set twice, a visible share of a polling daemon's CPU."""
        client = self.client
        if not _PLAIN_CALL.issuperset(kwargs):
            headers = httpx.Headers(self.headers)
            headers.update(httpx.Headers(kwargs.get("headers")))
            return client.build_request(method, url, **{**kwargs, "headers": headers})
        if self._defaults is None or self._defaults[0] is not client:
            merged = httpx.Headers(client.headers)
            merged.update(self.headers)
            self._defaults = (client, merged, client.timeout.as_dict())
        _, defaults, timeout = self._defaults
        headers = defaults.copy()
        if kwargs.get("headers"):
            headers.update(kwargs["headers"])
        return httpx.Request(method, url, headers=headers, content=kwargs.get("content"), data=kwargs.get("data"),
                             files=kwargs.get("files"), json=kwargs.get("json"), extensions={"timeout": timeout})

    def _remember_auth(self, request: httpx.Request) -> None:
        """Whatever authenticates a request is a secret, however the connector got it (a
        refreshed access token included)."""
        given = request.headers.get("authorization")
        if given:
            scheme, _, value = given.partition(" ")
            self.secrets.add(value.strip() or scheme)

    def _count(self, outcome: str) -> None:
        metrics.PROVIDER_REQUESTS.labels(self.platform or "unknown", outcome).inc()


#: What a request may carry for ``ProviderHttp._build`` to make it without the client.
_PLAIN_CALL = frozenset({"headers", "content", "data", "files", "json"})


def with_query(url: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``params`` written into a URL that has no query yet, as httpx would encode them: httpx
    parses a URL again to merge its params, and URL parsing was a tenth of a polling daemon's
    CPU."""
    params = kwargs.get("params")
    if params is None or "?" in url:
        return url, kwargs
    query = str(httpx.QueryParams(params))
    rest = {k: v for k, v in kwargs.items() if k != "params"}
    return (f"{url}?{query}" if query else url), rest


class Pages:
    """Guards a pagination loop: refuses a token that repeats, so a buggy API cannot loop."""

    def __init__(self, name: str):
        self.name = name
        self.seen: set[str] = set()

    def advance(self, token: str | None) -> str | None:
        if not token:
            return None
        if token in self.seen:
            raise PermanentError(f"{self.name}: pagination token repeated; stopping")
        self.seen.add(token)
        return token


async def settle_bounded(calls: Iterable[Awaitable[T]], limit: int) -> list[T | Exception]:
    """Run ``calls`` at most ``limit`` at a time; each one's result or its failure, in order.
    A cancellation is raised, not returned: it is the caller's, not one call's."""
    gate = asyncio.Semaphore(limit)

    async def bounded(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    outcomes = await asyncio.gather(*(bounded(c) for c in calls), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            raise outcome
    return outcomes  # type: ignore[return-value]


async def gather_bounded(calls: Iterable[Awaitable[Any]], limit: int) -> list[Any]:
    """Run ``calls`` at most ``limit`` at a time, in order; the first failure is raised once
    all have settled (so no request is left running behind the error)."""
    results = await settle_bounded(calls, limit)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def bearer(token: str) -> Authenticator:
    """The ``authenticate`` hook of a platform that takes a fixed bearer token."""

    async def authenticate(request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Bearer {token}"

    return authenticate


