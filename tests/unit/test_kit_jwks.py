"""Published signing keys are kept for the lifetime their answer allows, and no longer."""

from __future__ import annotations

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd.kit.jwks import DEFAULT_MAX_AGE_S, KeySets, lifetime_s

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key_sets(clock: Clock, cache_control: str, status: int = 200) -> tuple[KeySets, list[str]]:
    fetched: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        jwk = {**jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True), "kid": "k1"}
        return httpx.Response(status, json={"keys": [jwk, {"kid": "broken", "kty": "RSA"}]},
                              headers={"cache-control": cache_control})

    sets = KeySets(lambda root: f"https://{root}.example", transport=lambda _: httpx.MockTransport(answer),
                   clock=clock)
    return sets, fetched


async def test_a_set_is_used_until_its_max_age_and_fetched_again_after():
    clock = Clock()
    sets, fetched = key_sets(clock, "public, max-age=300")
    await sets.ensure("certs", "/keys", "k1")
    assert fetched == ["https://certs.example/keys"]
    assert sets.key("certs", "/keys", "k1") is not None
    assert sets.key("certs", "/keys", "broken") is None  # an unreadable key is left out
    clock.now += 299
    await sets.ensure("certs", "/keys", "k1")
    assert len(fetched) == 1
    clock.now += 2
    assert sets.key("certs", "/keys", "k1") is None  # outlived: not used any more
    await sets.ensure("certs", "/keys", "k1")
    assert len(fetched) == 2 and sets.key("certs", "/keys", "k1") is not None


async def test_an_unknown_key_refetches_at_most_once_a_minute():
    clock = Clock()
    sets, fetched = key_sets(clock, "max-age=3600")
    await sets.ensure("certs", "/keys", "k1")
    await sets.ensure("certs", "/keys", "new")
    assert len(fetched) == 1
    clock.now += 61
    await sets.ensure("certs", "/keys", "new")
    assert len(fetched) == 2


async def test_a_failed_fetch_leaves_no_key_and_raises_nothing():
    clock = Clock()
    sets, fetched = key_sets(clock, "max-age=3600", status=503)
    await sets.ensure("certs", "/keys", "k1")
    assert fetched and sets.key("certs", "/keys", "k1") is None


@pytest.mark.parametrize(("headers", "expected"), [
    ({"cache-control": "public, max-age=19800, must-revalidate"}, 19800.0),
    ({"cache-control": "max-age=600", "age": "100"}, 500.0),
    ({"cache-control": "no-store"}, 0.0),
    ({}, DEFAULT_MAX_AGE_S),
    ({"cache-control": "max-age=99999999"}, 86400.0),
])
def test_the_lifetime_comes_from_cache_control_less_age(headers, expected):
    assert lifetime_s(httpx.Headers(headers)) == expected
