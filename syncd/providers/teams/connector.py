"""Microsoft Teams through Microsoft Graph: the account's 1:1, group and meeting chats, and the
channels of the teams it has joined.

Transport quirks kept here (shape lives in ``mappings/teams.yaml``):

- ids: a chat keeps Graph's id (``19:...@thread.v2``, ``19:..._...@unq.gbl.spaces``); a channel
  is ``teams/{teamId}/channels/{channelId}``, Graph's own path (no Graph id contains ``/``). A
  chatMessage id is unique only inside its chat or channel, so ``externalMessageId`` is
  ``{externalChatId}:{messageId}`` and threads are ``{externalChatId}:{rootMessageId}``. Chat ids
  contain colons and message ids never do, so a composed id is split on its LAST colon.
- paging: ``@odata.nextLink`` is an opaque absolute URL, requested verbatim; it is followed only
  on the Graph root's own origin, since the request carries our bearer token. ``$top`` <= 50.
- auth: a bearer token refreshed at Microsoft's token endpoint before it expires and once on a
  401; Microsoft rotates refresh tokens, so the new ones are handed to ``ctx.on_credentials``.
- inbound: change-notification subscriptions kept alive by ``maintain`` (chatMessage
  subscriptions live at most 60 minutes); the ``validationToken`` handshake; ``clientState``
  checked in constant time on every notification of a batch; lifecycle events (reauthorize,
  removed, missed); each changed message is fetched by its ``resource``.
- bodies: an html body also gets a plain ``text``; system event messages are not conversation
  content and are skipped; Graph's occasionally malformed timestamps (the docs' own sample has
  ``2021-03-1706:47:05.123Z``) are repaired or dropped instead of failing a whole page.

:class:`TeamsConnector` is composed of one part per concern, each a module of this package:
``auth`` (credentials, scopes, token refresh), ``chats``, ``messages`` (shaping, history
pages), ``export`` (send, edit, delete), ``webhooks``, ``polling`` and ``subscriptions``; they
share ``graph`` (calls, paging, error classification), ``ids`` and ``timestamps``. What this
module exports is the whole public surface.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from syncd.kit.connector import ConnectorContext, OAuthSpec
from syncd.providers.teams.auth import SCOPES, TeamsAuth, TeamsCredentials, login_root
from syncd.providers.teams.chats import TeamsChats
from syncd.providers.teams.export import TeamsExport
from syncd.providers.teams.graph import PAGE_SIZE, GraphBearer
from syncd.providers.teams.ids import (
    Where,
    channel_id,
    compose,
    locate,
    parse_resource,
    split_message_id,
)
from syncd.providers.teams.messages import TeamsMessages
from syncd.providers.teams.polling import TeamsPolling
from syncd.providers.teams.subscriptions import TeamsSubscriptions
from syncd.providers.teams.webhooks import TeamsWebhooks

__all__ = [
    "CONNECTOR", "TeamsConnector", "TeamsCredentials", "Where", "channel_id", "compose", "locate",
    "parse_resource", "split_message_id",
]


class TeamsConnector(TeamsAuth, TeamsChats, TeamsMessages, TeamsExport, TeamsWebhooks, TeamsPolling,
                     TeamsSubscriptions):
    platform: ClassVar[str] = "teams"
    Credentials: ClassVar[type[BaseModel]] = TeamsCredentials
    base_url_key: ClassVar[str | None] = "teams"
    maintain_every_s: ClassVar[float | None] = 15 * 60
    secret_settings: ClassVar[tuple[str, ...]] = ("clientState",)
    oauth: ClassVar[OAuthSpec | None] = OAuthSpec(
        authorize_url="/common/oauth2/v2.0/authorize", token_url="/common/oauth2/v2.0/token",
        scopes=SCOPES, base_url_key="microsoft_login", authorize_params=(("response_mode", "query"),),
    )

    def __init__(self, credentials: BaseModel, settings: dict[str, Any], ctx: ConnectorContext):
        super().__init__(credentials, settings, ctx)
        self.page_size = PAGE_SIZE
        auth = self.http.authenticate
        if not isinstance(auth, GraphBearer):  # an http built elsewhere (tests): adopt it
            auth = GraphBearer(self.credentials.access_token, self.credentials.expires_at)
            self.http.authenticate = auth
        self.auth = auth
        self.login_root = login_root()
        self._me: dict[str, Any] | None = None
        #: Chats whose name this process has already sent along with a notification.
        self._described: set[str] = set()


CONNECTOR = TeamsConnector
