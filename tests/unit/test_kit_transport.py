"""The network transport under the shared clients (aiohttp behind httpx's interface), against
real sockets on loopback: what goes on the wire, what comes back, and what each failure means
to ``ProviderHttp`` (nothing sent, or the outcome unknown), never with the URL in it."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from syncd.kit.errors import OutcomeUnknown, TransientError
from syncd.kit.http import ProviderHttp, RetryPolicy, bearer
from syncd.kit.transport import AiohttpTransport
from syncd.sim.base import ServerThread

SECRET = "xoxb-secret-in-the-path-4242"


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with what it was sent; ``/gzip`` compresses its answer, ``/slow`` never answers
    in time, ``/peer`` names the client's port (one per connection)."""
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(5)
    seen = {"method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode(),
            "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]], "body": body.decode("latin-1"),
            "peer": scope["client"][1]}
    payload, headers = json.dumps(seen).encode(), [(b"content-type", b"application/json")]
    if scope["path"] == "/gzip":
        payload, headers = gzip.compress(payload), [*headers, (b"content-encoding", b"gzip")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with ServerThread(echo) as running:
        yield running.url


def client(**kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=AiohttpTransport(httpx.create_ssl_context()), **kwargs)


def headers_of(answer: httpx.Response) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in answer.json()["headers"]:
        out.setdefault(name, []).append(value)
    return out


async def test_a_request_goes_out_as_httpx_built_it(server: str):
    async with client(headers={"user-agent": "syncd"}) as http:
        answer = await http.get(f"{server}/api/conversations.history", params={"channel": "C1", "oldest": "1.5"},
                                headers={"authorization": "Bearer t", "x-one": "a b/c"})
    seen = answer.json()
    assert answer.status_code == 200 and answer.request.url.path == "/api/conversations.history"
    assert seen["method"] == "GET" and seen["query"] == "channel=C1&oldest=1.5" and seen["body"] == ""
    headers = headers_of(answer)
    # httpx's headers, each once; none of aiohttp's own.
    assert headers["user-agent"] == ["syncd"] and headers["authorization"] == ["Bearer t"]
    assert headers["x-one"] == ["a b/c"] and headers["accept"] == ["*/*"]
    assert "content-length" not in headers and "content-type" not in headers


async def test_bodies_keep_their_type_and_length(server: str):
    async with client() as http:
        as_json = await http.post(f"{server}/send", json={"text": "héllo"})
        as_form = await http.post(f"{server}/send", data={"a": "1", "b": "x y"})
        as_file = await http.post(f"{server}/upload", files={"file": ("a.txt", b"contents", "text/plain")})
    assert json.loads(as_json.json()["body"].encode("latin-1")) == {"text": "héllo"}
    assert headers_of(as_json)["content-type"] == ["application/json"]
    assert headers_of(as_json)["content-length"] == [str(len(as_json.request.content))]
    assert as_form.json()["body"] == "a=1&b=x+y"
    assert headers_of(as_form)["content-type"] == ["application/x-www-form-urlencoded"]
    upload = headers_of(as_file)
    assert upload["content-type"][0].startswith("multipart/form-data; boundary=")
    assert 'filename="a.txt"' in as_file.json()["body"] and "contents" in as_file.json()["body"]
    assert upload["content-length"] == [str(len(as_file.request.content))]


async def test_a_compressed_answer_is_read_decompressed(server: str):
    async with client() as http:
        answer = await http.get(f"{server}/gzip")
    assert answer.headers["content-encoding"] == "gzip" and answer.json()["path"] == "/gzip"


async def test_requests_reuse_one_connection(server: str):
    async with client() as http:
        peers = {(await http.get(f"{server}/peer")).json()["peer"] for _ in range(3)}
    assert len(peers) == 1


def test_one_transport_serves_one_event_loop_after_another(server: str):
    transport = AiohttpTransport(httpx.create_ssl_context())

    async def once() -> int:
        async with httpx.AsyncClient(transport=transport) as http:
            return (await http.get(f"{server}/again")).status_code

    assert asyncio.run(once()) == 200
    assert asyncio.run(once()) == 200


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_is_a_transient_error_without_the_url():
    http = ProviderHttp(f"http://127.0.0.1:{closed_port()}", policy=RetryPolicy(max_retries=0))
    with pytest.raises(TransientError) as raised:
        await http.request("GET", f"/bot{SECRET}/getMe", label="GET getMe")
    assert not isinstance(raised.value, OutcomeUnknown)
    assert "connection failed (ConnectError)" in str(raised.value) and SECRET not in repr(raised.value)
    await http.aclose()


async def test_no_answer_in_time_is_an_unknown_outcome(server: str):
    http = ProviderHttp(server, policy=RetryPolicy(max_retries=0), timeout_s=0.3)
    with pytest.raises(OutcomeUnknown, match="timed out waiting for the answer"):
        await http.request("POST", "/slow", json={})


def raw_server(handle: Callable[[socket.socket], None]) -> tuple[socket.socket, str]:
    """A listener on loopback whose every connection ``handle`` is given, in a thread."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            handle(conn)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
def hangs_up() -> Iterator[str]:
    """A server that reads a request and closes the connection without answering."""
    def read_only(conn: socket.socket) -> None:
        conn.recv(65536)

    listener, url = raw_server(read_only)
    yield url
    listener.close()


async def test_a_connection_dropped_before_the_answer_is_an_unknown_outcome(hangs_up: str):
    http = ProviderHttp(hangs_up, policy=RetryPolicy(max_retries=0), authenticate=bearer(SECRET))
    with pytest.raises(OutcomeUnknown, match="connection lost before the answer") as raised:
        await http.request("POST", "/messages", json={"text": "hi"})
    assert SECRET not in repr(raised.value) and SECRET not in str(raised.value.__cause__)


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[bytes]]]:
    """A forward proxy that answers every request itself and records its request line."""
    lines: list[bytes] = []
    body = b'{"proxied":true}'

    def answer(conn: socket.socket) -> None:
        lines.append(conn.recv(65536).split(b"\r\n", 1)[0])
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))

    listener, url = raw_server(answer)
    yield url, lines
    listener.close()


async def test_the_proxy_of_the_environment_is_used_unless_no_proxy_names_the_host(
        proxy: tuple[str, list[bytes]], server: str, monkeypatch: pytest.MonkeyPatch):
    address, lines = proxy
    monkeypatch.setenv("HTTP_PROXY", address)
    monkeypatch.setenv("NO_PROXY", "localhost")
    async with client() as http:
        proxied = await http.get("http://platform.example.test/api/x?y=1")
    assert proxied.json() == {"proxied": True}
    assert lines == [b"GET http://platform.example.test/api/x?y=1 HTTP/1.1"]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with client() as http:
        direct = await http.get(f"{server}/direct")
    assert direct.json()["path"] == "/direct" and len(lines) == 1
