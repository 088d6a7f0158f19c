"""The shared HTTP layer: retry policy, Retry-After, error classification, paginator guard."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from syncd.kit.errors import AuthError, PermanentError, RateLimited, TransientError
from syncd.kit.http import (
    Pages,
    ProviderHttp,
    RetryPolicy,
    background_lane,
    bearer,
    default_classify,
    parse_retry_after,
)


class Script:
    """A transport answering from a list of (status, headers) or exceptions, in order."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, headers = answer
        return httpx.Response(status, headers=headers, json={"ok": status < 400})


def client(script: Script, waits: list[float], retries: int = 3) -> ProviderHttp:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return ProviderHttp("https://api.example.test/v1", transport=httpx.MockTransport(script),
                        policy=RetryPolicy(max_retries=retries, base_s=0.5, max_s=60, sleep=sleep))


async def test_a_429_is_waited_out_for_its_retry_after_then_succeeds():
    script, waits = Script((429, {"Retry-After": "7"}), (200, {})), []
    response = await client(script, waits).request("GET", "/things")
    assert response.status_code == 200 and waits == [7.0] and len(script.requests) == 2
    assert str(script.requests[0].url) == "https://api.example.test/v1/things"


async def test_server_errors_and_resets_back_off_exponentially_within_the_budget():
    script = Script((503, {}), httpx.ConnectError("reset"), httpx.ReadTimeout("slow"), (200, {}))
    waits: list[float] = []
    await client(script, waits).request("GET", "/x")
    assert len(waits) == 3
    assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0 and 1.0 <= waits[2] <= 2.0


async def test_the_last_retryable_error_is_raised_when_the_budget_is_spent():
    script, waits = Script(*[(500, {})] * 3), []
    with pytest.raises(TransientError, match=r"GET /x: server error \(500\)"):
        await client(script, waits, retries=2).request("GET", "/x")
    assert len(script.requests) == 3


async def test_permanent_and_auth_errors_are_not_retried():
    for status, error in ((404, PermanentError), (401, AuthError)):
        script, waits = Script((status, {})), []
        with pytest.raises(error):
            await client(script, waits).request("GET", "/x")
        assert waits == [] and len(script.requests) == 1


async def test_error_messages_never_carry_the_url_query_or_a_token_in_the_path():
    script, waits = Script(httpx.ConnectError("boom"), httpx.ConnectError("boom")), []
    with pytest.raises(TransientError) as err:
        await client(script, waits, retries=1).request(
            "GET", "/botSECRET-TOKEN/getMe?key=SECRET", label="GET getMe")
    assert "SECRET" not in str(err.value) and err.value.__cause__ is None


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_default_classification_by_status():
    request = httpx.Request("GET", "https://x.test")
    with pytest.raises(RateLimited) as err:
        default_classify(httpx.Response(429, headers={"Retry-After": "3"}, request=request))
    assert err.value.retry_after == 3.0
    with pytest.raises(TransientError):
        default_classify(httpx.Response(502, request=request))
    with pytest.raises(PermanentError):
        default_classify(httpx.Response(400, request=request))
    default_classify(httpx.Response(204, request=request))


def test_a_repeated_page_token_stops_the_loop():
    pages = Pages("things.list")
    assert pages.advance("a") == "a" and pages.advance("b") == "b"
    assert pages.advance("") is None and pages.advance(None) is None
    with pytest.raises(PermanentError, match="repeated"):
        pages.advance("a")


async def test_a_wait_longer_than_the_inline_limit_is_handed_back_to_be_rescheduled():
    script, waits = Script((429, {"Retry-After": "120"}), (200, {})), []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    http = ProviderHttp("https://api.example.test", transport=httpx.MockTransport(script),
                        policy=RetryPolicy(max_retries=3, sleep=sleep, max_inline_wait_s=30))
    with pytest.raises(RateLimited) as err:
        await http.request("GET", "/x")
    assert err.value.retry_after == 120.0  # the engine schedules the next attempt for then
    assert waits == [] and len(script.requests) == 1


def gated_client() -> tuple[ProviderHttp, dict[str, asyncio.Event], list[str]]:
    """A client whose answers to ``/<name>`` wait until the test opens that name's gate."""
    gates: dict[str, asyncio.Event] = {}
    order: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        name = request.url.path.strip("/")
        order.append(name)
        await gates.setdefault(name, asyncio.Event()).wait()
        return httpx.Response(200, json={"ok": True})

    return ProviderHttp("http://api.test", transport=httpx.MockTransport(handler)), gates, order


async def background_get(http: ProviderHttp, path: str) -> httpx.Response:
    with background_lane():
        return await http.request("GET", path)


async def test_a_background_request_waits_while_a_live_one_is_in_flight():
    http, gates, order = gated_client()
    live = asyncio.create_task(http.request("GET", "/send"))
    await asyncio.sleep(0.01)
    background = asyncio.create_task(background_get(http, "/history"))
    await asyncio.sleep(0.05)
    assert order == ["send"] and not background.done()
    gates["send"].set()
    await live
    gates.setdefault("history", asyncio.Event()).set()
    assert (await asyncio.wait_for(background, 1)).status_code == 200
    assert order == ["send", "history"]
    await http.aclose()


async def test_live_requests_never_wait_for_the_background_lane_which_runs_one_at_a_time():
    http, gates, order = gated_client()
    first = asyncio.create_task(background_get(http, "/page1"))
    second = asyncio.create_task(background_get(http, "/page2"))
    await asyncio.sleep(0.02)
    assert order == ["page1"]  # the lane has one slot
    gates["poll"] = asyncio.Event()
    gates["poll"].set()
    assert (await asyncio.wait_for(http.request("GET", "/poll"), 1)).status_code == 200
    gates["page1"].set()
    gates.setdefault("page2", asyncio.Event()).set()
    await asyncio.wait_for(asyncio.gather(first, second), 1)
    assert order == ["page1", "poll", "page2"]


@pytest.mark.parametrize("path", ["/v1/../../escape/messages", "/v1/x#frag/messages", "/v1/%2E%2E/me",
                                  "/v1/a\\..\\b"])
async def test_a_path_that_escapes_its_template_is_refused_before_anything_is_sent(path):
    sent: list[httpx.Request] = []
    http = ProviderHttp("https://api.example", transport=httpx.MockTransport(
        lambda r: sent.append(r) or httpx.Response(200, json={})))
    with pytest.raises(PermanentError, match="escapes its template"):
        await http.request("GET", path)
    assert sent == []
    await http.aclose()


async def test_a_token_the_platform_quotes_in_its_error_is_scrubbed_from_the_exception():
    def answer(request: httpx.Request) -> httpx.Response:
        token = request.headers["authorization"].partition(" ")[2]
        return httpx.Response(400, json={"error": f"bad token {token}"})

    def classify(response: httpx.Response) -> None:
        if response.status_code >= 400:
            raise PermanentError(response.json()["error"])

    http = ProviderHttp("https://api.example", classify=classify, authenticate=bearer("tok-echoed-123456"),
                        transport=httpx.MockTransport(answer))
    with pytest.raises(PermanentError) as raised:
        await http.request("GET", "/me")
    assert "tok-echoed-123456" not in str(raised.value) and "[redacted]" in str(raised.value)
    await http.aclose()
