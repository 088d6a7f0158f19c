"""The kit's ``oauth1`` auth: OAuth 1.0a HMAC-SHA1 signatures that an independent RFC 5849
implementation (the X simulator's) accepts, and the X documentation's worked example."""

from __future__ import annotations

import httpx

from syncd.kit.auth import ManifestAuth
from syncd.kit.manifest import Auth
from syncd.providers.twitter.sim import oauth1_signature, parse_oauth_header

SPEC = Auth(type="oauth1", consumer_key="{credentials.ck}", consumer_secret="{credentials.cs}",
            token="{credentials.t}", token_secret="{credentials.ts}")
CREDENTIALS = {"ck": "xvz1evFS4wEEPTGEFPHBog", "cs": "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
               "t": "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb", "ts": "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"}


def signed(request: httpx.Request) -> dict[str, str]:
    ManifestAuth(SPEC, {"credentials": CREDENTIALS}).apply(request)
    return parse_oauth_header(request.headers["authorization"])


def expected(request: httpx.Request, oauth: dict[str, str], form: list[tuple[str, str]] = ()) -> str:
    params = [(k, v) for k, v in oauth.items() if k != "oauth_signature"]
    params += list(request.url.params.multi_items()) + list(form)
    url = str(request.url.copy_with(query=None))
    return oauth1_signature(request.method, url, params, CREDENTIALS["cs"], CREDENTIALS["ts"])


def test_the_documented_worked_example_signs_as_published():
    """X's "Creating a signature" example (developer.x.com, OAuth 1.0a)."""
    oauth = {"oauth_consumer_key": CREDENTIALS["ck"], "oauth_nonce": "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
             "oauth_signature_method": "HMAC-SHA1", "oauth_timestamp": "1318622958",
             "oauth_token": CREDENTIALS["t"], "oauth_version": "1.0"}
    params = [*oauth.items(), ("include_entities", "true"), ("status", "Hello Ladies + Gentlemen, a signed OAuth request!")]
    assert oauth1_signature("POST", "https://api.twitter.com/1.1/statuses/update.json", params,
                            CREDENTIALS["cs"], CREDENTIALS["ts"]) == "hCtSmYh+iHYCEqBWrE7C7hYmtUk="


def test_a_get_with_a_query_is_signed_over_the_query():
    request = httpx.Request("GET", "https://api.x.com/2/dm_events?max_results=100&dm_event.fields=id,text")
    oauth = signed(request)
    assert oauth["oauth_signature_method"] == "HMAC-SHA1" and oauth["oauth_version"] == "1.0"
    assert oauth["oauth_consumer_key"] == CREDENTIALS["ck"] and oauth["oauth_token"] == CREDENTIALS["t"]
    assert oauth["oauth_signature"] == expected(request, oauth)


def test_a_json_body_is_not_signed_and_a_form_body_is():
    request = httpx.Request("POST", "https://api.x.com/2/dm_conversations/with/1/messages", json={"text": "hi"})
    oauth = signed(request)
    assert oauth["oauth_signature"] == expected(request, oauth)
    form = httpx.Request("POST", "https://example.com/form", data={"status": "a b+c"})
    oauth = signed(form)
    assert oauth["oauth_signature"] == expected(form, oauth, [("status", "a b+c")])


def test_each_request_gets_a_fresh_nonce():
    first = signed(httpx.Request("GET", "https://api.x.com/2/users/me"))
    second = signed(httpx.Request("GET", "https://api.x.com/2/users/me"))
    assert first["oauth_nonce"] != second["oauth_nonce"]
