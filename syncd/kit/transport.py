"""The network under the shared HTTP clients: aiohttp's connection pool and C HTTP parser,
behind httpx's transport interface.

Everything above it stays httpx: requests and responses are ``httpx.Request`` and
``httpx.Response``, authentication is ``httpx.Auth``, tests give an ``httpx.MockTransport``.
Only the wire changes. With httpx's own transport (httpcore and h11, pure Python) one request
to a platform cost 1.3-1.9 ms of CPU on this machine; through this one about 0.6 ms
(``bench/README.md``, "Issue 16: the HTTP transport"). At 10,000 integrations polling every
minute that is most of a core.

Failures come out as httpx's exceptions, with the meaning ``ProviderHttp`` gives them: nothing
was sent (``ConnectError``, ``ConnectTimeout``), or the request may have been acted on
(``ReadTimeout``, ``ReadError``, ``RemoteProtocolError``). Their messages never carry the URL,
which can hold a token.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request

import aiohttp
import httpx
import yarl

#: Seconds an idle connection is kept for reuse (aiohttp's default; httpx keeps one 5 s). The
#: pool checks a connection only when it is taken, so many kept connections cost nothing.
KEEP_ALIVE_S = 15.0

#: Headers aiohttp would add on its own: httpx has already set the ones the request carries.
_NOT_AUTOMATIC = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})

#: Request headers aiohttp must set itself for the body it is given as bytes.
_FRAMING = frozenset({b"transfer-encoding", b"content-length"})


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (its own pool of connections) for every request of one httpx
    client. It is opened on first use in the running event loop, and again in another loop."""

    def __init__(self, tls: ssl.SSLContext):
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Proxies from the environment, as httpx takes them (HTTP_PROXY, HTTPS_PROXY,
        # ALL_PROXY, NO_PROXY), read once: aiohttp's own trust_env reads the environment and
        # ~/.netrc in a worker thread on every request.
        self._proxies = urllib.request.getproxies_environment()

    def _open(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(limit=0, ssl=self._tls, keepalive_timeout=KEEP_ALIVE_S)
            # No cookies (a client serves many integrations), no decompression (httpx's
            # response does it, as for its own transport).
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                skip_auto_headers=_NOT_AUTOMATIC, timeout=aiohttp.ClientTimeout(total=None))
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                   if k.lower() not in _FRAMING]
        try:
            async with self._open().request(
                    request.method, yarl.URL(str(request.url), encoded=True), headers=headers,
                    data=body or None, allow_redirects=False, timeout=_timeout(request),
                    proxy=self._proxy(request.url)) as answer:
                content = await answer.read()
        except Exception as exc:
            raise _as_httpx(exc, request) from None
        return httpx.Response(
            answer.status, headers=answer.raw_headers, stream=httpx.ByteStream(content), request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (answer.reason or "").encode("latin-1")})

    def _proxy(self, url: httpx.URL) -> str | None:
        # proxy_bypass_environment is public and documented, though typeshed omits it.
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if not self._proxies or bypass(url.host, self._proxies):
            return None
        return self._proxies.get(url.scheme) or self._proxies.get("all")

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts: ``connect`` for getting a connection, ``read`` for each
    wait on the answer (a long poll's request gives a longer one)."""
    given = request.extensions.get("timeout") or {}
    return aiohttp.ClientTimeout(total=None, connect=given.get("connect"), sock_connect=given.get("connect"),
                                 sock_read=given.get("read"))


def _as_httpx(exc: Exception, request: httpx.Request) -> Exception:
    """aiohttp's failure as the httpx exception of the same meaning, without the URL."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(f"{name}: no connection in time", request=request)
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return httpx.ReadTimeout(f"{name}: no answer in time", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = getattr(getattr(exc, "_os_error", None), "strerror", None) or "connection failed"
        return httpx.ConnectError(f"{name}: {reason}", request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(f"{name}: the URL cannot be requested", request=request)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientResponseError)):
        return httpx.RemoteProtocolError(f"{name}: the answer was cut off or malformed", request=request)
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return httpx.ReadError(f"{name}: the connection failed during the exchange", request=request)
    return exc
