"""What WhatsApp, Messenger and Instagram share beyond their manifests: the wait that Meta's
usage headers give when the Graph API throttles.

Signatures, the verification handshake and the error classification (throttling codes in any
status, 190 as an auth failure, the 24-hour window) are data in each platform's manifest.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import BaseModel

from syncd.kit.declarative import ManifestConnector
from syncd.kit.errors import RateLimited
from syncd.kit.http import Classifier, ProviderHttp, RetryPolicy

#: Meta's usage headers; each maps ids to lists of usage entries.
USAGE_HEADERS = ("x-business-use-case-usage", "x-app-usage", "x-page-usage")


def usage_wait_s(response: httpx.Response) -> float | None:
    """Seconds until access returns, from the usage headers' ``estimated_time_to_regain_access``
    (minutes); ``None`` when no header says."""
    for header in USAGE_HEADERS:
        try:
            usage: Any = json.loads(response.headers.get(header) or "null")
        except ValueError:
            continue
        entries = [e for v in usage.values() if isinstance(v, list) for e in v] if isinstance(usage, dict) else []
        waits = [e.get("estimated_time_to_regain_access") for e in entries if isinstance(e, dict)]
        minutes = [w for w in waits if isinstance(w, (int, float)) and not isinstance(w, bool)]
        if minutes:
            return max(minutes) * 60.0
    return None


def with_usage_wait(classify: Classifier) -> Classifier:
    """``classify``, with a throttled answer's wait taken from the usage headers where there is
    no Retry-After: they say how long Meta keeps refusing, a fixed floor does not."""

    def check(response: httpx.Response) -> None:
        try:
            classify(response)
        except RateLimited as exc:
            wait = None if response.headers.get("retry-after") else usage_wait_s(response)
            if wait is not None:
                exc.retry_after = wait
            raise

    return check


class GraphConnector(ManifestConnector):
    """A platform on Meta's Graph API: its manifest, plus the usage headers' wait."""

    @classmethod
    def make_http(cls, base_url: str, credentials: BaseModel, *, policy: RetryPolicy, timeout_s: float,
                  transport: httpx.AsyncBaseTransport | None = None) -> ProviderHttp:
        http = super().make_http(base_url, credentials, policy=policy, timeout_s=timeout_s, transport=transport)
        http.classify = with_usage_wait(http.classify)
        return http
