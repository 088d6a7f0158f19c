"""API fuzzing: schemathesis generates requests from the served OpenAPI document for every
endpoint. No answer may be a 5xx (but the readiness probe's 503), and every error must be in
the JSON error format. ``SYNCD_FUZZ_EXAMPLES`` sets the examples per endpoint (CI keeps the
default small; raise it for a longer run)."""

from __future__ import annotations

import asyncio
import os

import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from syncd.config import Settings
from syncd.daemon import build

ADMIN = "fuzz-admin-token"


async def _app():
    # Every OAuth app configured, so /connect answers from its logic rather than a 503.
    apps = {p: {"clientId": f"{p}-client", "clientSecret": f"{p}-secret", "signingSecret": "s", "verifyToken": "v"}
            for p in ("slack", "gmail", "teams", "messenger", "instagram")}
    settings = Settings(mongodb_uri="mongomock://", admin_token=ADMIN, app_webhook_secret="fuzz-app-secret",
                        public_url="http://syncd.test", secret_key="fuzz-secret-key", oauth_clients=apps)
    return (await build(settings)).app


schema = schemathesis.openapi.from_asgi("/openapi.json", asyncio.run(_app()))


@schema.parametrize()
@hypothesis_settings(max_examples=int(os.environ.get("SYNCD_FUZZ_EXAMPLES", "15")), deadline=None,
                     suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_endpoint_answers_a_server_error_or_an_unformatted_error(case):
    response = case.call(headers={"Authorization": f"Bearer {ADMIN}"})
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    # No workers run in this app, so the readiness probe rightly answers 503.
    ready_probe = case.path == "/readyz" and case.method == "GET" and response.status_code == 503
    assert response.status_code < 500 or ready_probe, where
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["error"].get("code"), str) and isinstance(body["error"].get("message"), str), where
