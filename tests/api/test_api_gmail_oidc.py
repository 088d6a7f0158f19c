"""Gmail Pub/Sub pushes authenticated the way Google recommends: ``Authorization: Bearer`` with
an OIDC token Google signed for the push subscription's service account, checked against the
keys Google publishes (here: a key server of the test's own, on the ``google_certs`` root)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from apisupport import assert_error, chat_messages
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from syncd.testbed import BASE, GMAIL_PUSH_TOKEN

SERVICE_ACCOUNT = "gmail-push@syncd-test.iam.gserviceaccount.com"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class KeyServer:
    """Google's ``/oauth2/v3/certs``: a JWK Set of one key, with a cache lifetime; counts fetches."""

    def __init__(self) -> None:
        self.fetches = 0

    def asgi(self) -> Starlette:
        async def certs(_: Request) -> JSONResponse:
            self.fetches += 1
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(_KEY.public_key(), as_dict=True)
            return JSONResponse({"keys": [{**jwk, "kid": "kid-1", "alg": "RS256", "use": "sig"}]},
                                headers={"cache-control": "public, max-age=19800, must-revalidate, no-transform"})

        return Starlette(routes=[Route("/oauth2/v3/certs", certs)])


def oidc_token(integration: dict[str, Any], *, key: Any = _KEY, kid: str = "kid-1", **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": "https://accounts.google.com", "aud": integration["webhookUrl"], "azp": "1161",
               "email": SERVICE_ACCOUNT, "email_verified": True, "sub": "1161", "iat": now, "exp": now + 3600,
               **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm="RS256",
                      headers={"kid": kid})


@pytest.fixture
async def keys() -> KeyServer:
    return KeyServer()


@pytest.fixture
async def otb(make_tb, keys):
    return await make_tb(sims={"google_certs": keys.asgi()})


@pytest.fixture
async def oidc_gmail(otb) -> dict[str, Any]:
    otb.gmail.add_incoming(None, "Guilherme Dias <email@domain.com>", "Order #1001", "Where is my order?")
    return await otb.create_gmail(settings={"pushServiceAccount": SERVICE_ACCOUNT})


async def push(tb, integration: dict[str, Any], bearer: str | None, token: str | None = None):
    body, headers = tb.gmail.push_notification()
    if bearer is not None:
        headers = {**headers, "authorization": f"Bearer {bearer}"}
    query = f"?token={token}" if token is not None else ""
    return await tb.api.post(integration["webhookUrl"].replace(BASE, "") + query, content=body, headers=headers)


async def test_a_push_with_a_valid_google_token_and_no_push_token_imports_the_new_email(otb, oidc_gmail):
    thread = otb.gmail.add_incoming(None, "Ana Lima <ana@example.org>", "Invoice 7", "Please pay")
    response = await push(otb, oidc_gmail, oidc_token(oidc_gmail))
    assert response.status_code in (200, 204), response.text
    await otb.settle()
    assert [m["text"].strip() for m in await chat_messages(otb, oidc_gmail, thread)] == ["Please pay"]


async def test_a_push_carrying_both_the_push_token_and_a_valid_google_token_is_accepted(otb, oidc_gmail):
    audience = f"{oidc_gmail['webhookUrl']}?token={GMAIL_PUSH_TOKEN}"  # Pub/Sub's default: the endpoint URL
    response = await push(otb, oidc_gmail, oidc_token(oidc_gmail, aud=audience), token=GMAIL_PUSH_TOKEN)
    assert response.status_code in (200, 204), response.text


async def test_a_configured_audience_is_accepted(make_tb, keys):
    tb = await make_tb(sims={"google_certs": keys.asgi()})
    gmail = await tb.create_gmail(settings={"pushServiceAccount": SERVICE_ACCOUNT, "pushAudience": "syncd-push"})
    assert (await push(tb, gmail, oidc_token(gmail, aud="syncd-push"))).status_code in (200, 204)


@pytest.mark.parametrize(("why", "change", "message"), [
    ("wrong audience", {"aud": "https://elsewhere.example/push"}, "audience is not this endpoint"),
    ("wrong service account", {"email": "intruder@evil.iam.gserviceaccount.com"}, "email does not match"),
    ("unverified email", {"email_verified": False}, "email_verified is not true"),
    ("wrong issuer", {"iss": "https://evil.example"}, "not issued by accounts.google.com"),
    ("expired", {"exp": int(time.time()) - 600, "iat": int(time.time()) - 4200}, "expired"),
    ("no expiry", {"exp": None}, "MissingRequiredClaimError"),
    ("bad signature", {"key": _OTHER_KEY}, "bad signature"),
    ("unknown key", {"kid": "kid-rotated-away"}, "a key the platform does not publish"),
])
async def test_a_google_token_that_does_not_fit_is_refused_and_nothing_is_stored(otb, oidc_gmail, why, change,
                                                                                message):
    thread = otb.gmail.add_incoming(None, "Ana Lima <ana@example.org>", "Invoice 7", "Not via push")
    error = assert_error(await push(otb, oidc_gmail, oidc_token(oidc_gmail, **change)), 401, "bad_signature")
    assert message in error["message"], why
    await otb.settle()
    assert thread not in await otb.chats(oidc_gmail)


async def test_a_google_token_is_not_enough_when_no_service_account_is_configured(otb):
    gmail = await otb.create_gmail()
    error = assert_error(await push(otb, gmail, oidc_token(gmail)), 401, "bad_signature")
    assert "settings.pushServiceAccount" in error["message"]


async def test_a_valid_google_token_does_not_excuse_a_wrong_push_token(otb, oidc_gmail):
    assert_error(await push(otb, oidc_gmail, oidc_token(oidc_gmail), token="wrong-token"), 401, "bad_signature")


async def test_googles_keys_are_fetched_once_for_many_pushes_and_a_made_up_key_id_does_not_refetch_each_time(
        otb, oidc_gmail, keys):
    for _ in range(5):
        assert (await push(otb, oidc_gmail, oidc_token(oidc_gmail))).status_code in (200, 204)
    assert keys.fetches == 1
    for _ in range(5):
        assert_error(await push(otb, oidc_gmail, oidc_token(oidc_gmail, kid="made-up")), 401)
    assert keys.fetches == 1  # fetched less than a minute ago: an unknown key id waits
