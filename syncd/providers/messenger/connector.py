"""Facebook Messenger: a Page's conversations with people, through the Graph API and the
Messenger Platform webhooks (``object: "page"``).

Everything Messenger shares with Instagram lives in ``meta/pages.py``; the rest is its manifest,
``mappings/messenger.yaml``. Users are page-scoped ids (PSIDs): the same person has another
id on every Page, so chats are per integration's Page.

The OAuth connect flow ends with a *user* token, which cannot read or send a Page's messages.
``finish_oauth`` asks which Pages the user administers (``GET /me/accounts``): with one, its id
and Page token become the credentials. With several, the flow's ``settings.pageId`` names the
Page and the credentials keep the user token (``tokenKind: "user"``): the connector trades it
for that Page's token (``GET /{page-id}?fields=access_token``) before its first call and
stores the Page token through ``ctx.on_credentials``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from syncd.kit.connector import OAuthSpec
from syncd.kit.errors import AuthError
from syncd.kit.http import ProviderHttp
from syncd.providers.meta.pages import PageMessagingConnector, managed_pages


class MessengerConnector(PageMessagingConnector):
    token_field = "pageAccessToken"
    account_field = "pageId"
    oauth: ClassVar[OAuthSpec | None] = OAuthSpec(
        authorize_url="/dialog/oauth",
        # The consent dialog is on www.facebook.com, the token endpoint on the Graph API root.
        token_url="{meta}/oauth/access_token",
        scopes=("pages_messaging", "pages_manage_metadata", "pages_read_engagement"),
        base_url_key="meta_www",
        scope_separator=",",
    )

    @classmethod
    def credentials_from_oauth(
        cls, token: dict[str, Any], *, client_id: str, client_secret: str
    ) -> dict[str, Any]:
        """The user token (see ``finish_oauth``) and the app secret, which is the OAuth client
        secret. ``verifyToken`` comes from the operator's OAuth app configuration (one per Meta
        app)."""
        return {"pageAccessToken": token["access_token"], "tokenKind": "user", "appSecret": client_secret}

    @classmethod
    async def finish_oauth(cls, credentials: dict[str, Any], http: ProviderHttp) -> dict[str, Any]:
        """The user's only Page, with its own token; several Pages: left to ``settings.pageId``."""
        if credentials.get("tokenKind") != "user":
            return credentials
        pages = await managed_pages(cls, http, credentials["pageAccessToken"], "id,name,access_token")
        if not pages:
            raise AuthError("the connected Facebook user administers no Page")
        if len(pages) > 1 or not pages[0].get("access_token"):
            return credentials
        return {**credentials, "pageId": str(pages[0]["id"]), "pageAccessToken": pages[0]["access_token"],
                "tokenKind": "page"}

    async def _ready(self) -> None:
        creds = self.credentials.model_dump(by_alias=True)
        if not creds.get("pageId") and creds.get("tokenKind") != "user":
            # Smooch's arguments name no Page: a Page token's /me is its Page.
            page = await self._get("/me", {"fields": "id"}, label="GET me")
            await self._store({**creds, "pageId": str(page["id"])})
        if creds.get("tokenKind") != "user":
            return
        data = await self._get(f"/{self.account_id}", {"fields": "access_token"}, label="GET page token")
        if not data.get("access_token"):
            raise AuthError("the connected user gives no access to this Page's messages "
                            "(a Page admin with pages_messaging must connect it)")
        self.use_token(str(data["access_token"]))
        await self._store({**creds, "pageAccessToken": str(data["access_token"]), "tokenKind": "page"})

    async def _store(self, credentials: dict[str, Any]) -> None:
        """Use ``credentials`` from now on and store them, so a restart starts with them."""
        self.credentials = self.Credentials.model_validate(credentials)
        if self.ctx.on_credentials is not None:
            await self.ctx.on_credentials(self.credentials.model_dump(by_alias=True, exclude_none=True))


CONNECTOR = MessengerConnector
