"""The creation-token connect flow: the platform itself sends the customer's browser to
``GET /connect/{platform}?token=…[&customerId=…]`` with a short-lived token good for creating
one connection (a vendor's reusable app, set up once for all its customers).

The token is the link's only credential: syncd trades it at the platform (the connector's
``connect_with_token``, declared in its manifest) for the connection's own credentials, and
creates the integration with them. The platform checks the token; syncd uses each token once
(claimed in the store's ``leases`` collection, ``connect-token:<sha256>``, on every replica),
and stores nothing unless the trade and the integration's creation succeed.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import structlog

from syncd.api.errors import ApiError
from syncd.engine.engine import Engine
from syncd.kit.connector import Connector, TokenConnection
from syncd.kit.errors import AuthError, PermanentError, ProviderError
from syncd.models import Integration

log = structlog.get_logger(__name__)

#: How long a used token is remembered: longer than any creation token lives.
USED_TOKEN_TTL_S = 24 * 3600
MAX_TOKEN_CHARS = 8192


class TokenConnect:
    """One ``GET /connect/{platform}?token=`` of a platform with ``token_connect_credential``."""

    def __init__(self, engine: Engine, platform: str, cls: type[Connector]):
        self.engine, self.platform, self.cls = engine, platform, cls

    async def connect(self, token: str | None, customer_id: str | None, name: str | None) -> Integration:
        token = (token or "").strip()
        if not token:
            raise ApiError(400, "bad_request", f"the link has no token: open it from {self.platform}, "
                           "which adds its channel-creation token")
        if len(token) > MAX_TOKEN_CHARS:
            raise ApiError(400, "bad_request", f"token longer than {MAX_TOKEN_CHARS} characters")
        lease, owner = f"connect-token:{hashlib.sha256(token.encode()).hexdigest()}", f"connect:{uuid.uuid4().hex}"
        if not await self.engine.store.acquire_lease(lease, owner, USED_TOKEN_TTL_S):
            raise ApiError(409, "token_used", f"this {self.platform} token was already used to connect; "
                           f"add the channel in {self.platform} again for a new one")
        try:
            made = await self._trade(token, customer_id)
        except ApiError as exc:
            if exc.status >= 500:  # the platform could not answer: the same token may be tried again
                await self.engine.store.release_lease(lease, owner)
            raise
        customer = customer_id or made.account
        if not customer:
            raise ApiError(422, "unknown_customer", f"the link names no customerId and {self.platform}'s answer "
                           "names no account; add customerId to the connect URL")
        integration = await self.engine.create_integration(
            platform=self.platform, customer_id=customer, name=name or made.name,
            credentials=made.credentials, settings=made.settings or None)
        log.info("connect by token finished", platform=self.platform, customer_id=customer,
                 integration_id=integration.id, by="link" if customer_id else "account")
        return integration

    async def _trade(self, token: str, customer_id: str | None) -> TokenConnection:
        """The platform's answer to the token, as credentials; refusals as the customer's error."""
        credential = self.cls.token_connect_credential or ""
        pending = Integration(customer_id=customer_id or "pending", platform=self.platform, name=self.platform)
        connector = self.engine.ctx.connectors.build(pending, {credential: token}, quick=True)
        connect: dict[str, Any] = {"id": uuid.uuid4().hex[:16], "customerId": customer_id}
        try:
            return await connector.connect_with_token(connect)
        except AuthError as exc:
            if exc.status == 403:  # the token was good; the account may not have the connection
                raise ApiError(403, "connect_refused", f"{self.platform} refused to create the connection: "
                               f"{exc}") from None
            raise ApiError(401, "token_rejected", f"{self.platform} refused the token (expired, already used, "
                           f"or not one of its own): {exc}; add the channel in {self.platform} again") from None
        except PermanentError as exc:
            raise ApiError(400, "connect_refused", f"{self.platform} refused to create the connection: {exc}") from None
        except ProviderError as exc:
            log.warning("connect by token: platform unreachable", platform=self.platform, error=str(exc))
            raise ApiError(502, "platform_unreachable", f"{self.platform} cannot be reached to create the "
                           f"connection ({exc}); nothing was stored, open the link again") from None
        finally:
            await connector.close()
