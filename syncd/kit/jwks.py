"""Public signing keys that platforms publish as JSON Web Key Sets, for ``oidc`` verifiers.

A delivery's token names its key (``kid``); ``KeySets.ensure`` fetches the set that holds it
before the (I/O-free) verification runs, and ``KeySets.key`` hands the key over. A set is kept
as long as its answer's ``Cache-Control: max-age`` allows (minus ``Age``), so many deliveries
cost one fetch. A key that the set does not hold (rotated in early, or made up) refetches it,
at most once every ``REFETCH_MIN_S``, so forged ``kid`` values cannot make syncd hammer the
platform. One ``KeySets`` serves every connector of a process.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import structlog

log = structlog.get_logger(__name__)

#: Kept this long when the answer says nothing of its lifetime.
DEFAULT_MAX_AGE_S = 3600.0
#: Never kept longer than this, whatever the answer says.
LONGEST_MAX_AGE_S = 86400.0
#: An unknown key refetches the set at most this often.
REFETCH_MIN_S = 60.0
FETCH_TIMEOUT_S = 10.0

_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*(\d+)", re.IGNORECASE)


def lifetime_s(headers: httpx.Headers) -> float:
    """How long an answer may be used: ``max-age`` less ``Age``; 0 for ``no-store``/``no-cache``."""
    control = headers.get("cache-control", "")
    if re.search(r"no-store|no-cache", control, re.IGNORECASE):
        return 0.0
    found = _MAX_AGE.search(control)
    if found is None:
        return DEFAULT_MAX_AGE_S
    try:
        age = float(headers.get("age", "0"))
    except ValueError:
        age = 0.0
    return max(0.0, min(float(found.group(1)), LONGEST_MAX_AGE_S) - age)


def parse_keys(document: Any) -> dict[str, Any]:
    """``kid`` -> public key of every usable key of a JWK Set; a key that cannot be read is left out."""
    keys: dict[str, Any] = {}
    for jwk in document.get("keys", []) if isinstance(document, dict) else []:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or jwk.get("use", "sig") != "sig":
            continue
        try:
            keys[jwk["kid"]] = jwt.PyJWK(jwk).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
    return keys


@dataclass
class _Set:
    keys: dict[str, Any] = field(default_factory=dict)
    fetched_at: float = float("-inf")
    expires_at: float = float("-inf")


class KeySets:
    """Key sets by URL. ``base_url`` resolves an API root's key (as ``SYNCD_<ROOT>_BASE_URL``
    does); ``transport`` gives the transport for a root (a test's fake key server) or ``None``."""

    def __init__(self, base_url: Callable[[str], str], *,
                 transport: Callable[[str], httpx.AsyncBaseTransport | None] = lambda _: None,
                 clock: Callable[[], float] = time.monotonic):
        self.base_url = base_url
        self.transport = transport
        self.clock = clock
        self._sets: dict[str, _Set] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: Fetches made, by URL (what the metrics and tests read).
        self.fetches: dict[str, int] = {}

    def url(self, root: str, path: str) -> str:
        return self.base_url(root).rstrip("/") + path

    def key(self, root: str, path: str, kid: str) -> Any | None:
        """The public key ``kid`` of the set at ``root``+``path``; ``None`` when it is not known
        or the set has outlived its cache lifetime."""
        found = self._sets.get(self.url(root, path))
        if found is None or self.clock() >= found.expires_at:
            return None
        return found.keys.get(kid)

    async def ensure(self, root: str, path: str, kid: str) -> None:
        """Fetch the set unless it is fresh and holds ``kid``. A failed fetch keeps what was
        known: the token is then refused for an unknown key, and the platform redelivers."""
        url = self.url(root, path)
        async with self._locks.setdefault(url, asyncio.Lock()):
            found = self._sets.get(url, _Set())
            now = self.clock()
            fresh = now < found.expires_at
            if fresh and (kid in found.keys or now - found.fetched_at < REFETCH_MIN_S):
                return
            await self._fetch(root, url, found)

    async def _fetch(self, root: str, url: str, found: _Set) -> None:
        self.fetches[url] = self.fetches.get(url, 0) + 1
        found.fetched_at = self.clock()
        self._sets[url] = found
        try:
            async with httpx.AsyncClient(transport=self.transport(root), timeout=FETCH_TIMEOUT_S) as client:
                response = await client.get(url, headers={"accept": "application/json"})
            response.raise_for_status()
            keys = parse_keys(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("signing keys unavailable", url=url, error=type(exc).__name__)
            return
        self._sets[url] = _Set(keys, found.fetched_at, found.fetched_at + lifetime_s(response.headers))
