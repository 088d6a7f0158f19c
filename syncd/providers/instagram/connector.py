"""Instagram Messaging: a professional account's direct messages, through the Graph API
(Facebook Login: the conversations of ``platform=instagram``) and the Instagram webhooks
(``object: "instagram"``). The OAuth connect flow finds the account through the user's Pages
(``finish_oauth``).

Everything Instagram shares with Messenger lives in ``meta/pages.py``; the rest is its
manifest, ``mappings/instagram.yaml``. Users are Instagram-scoped ids (IGSIDs); a user's unsend arrives
as ``message.is_deleted`` and becomes a tombstone.
"""

from __future__ import annotations

from typing import Any, ClassVar

from syncd.kit.connector import OAuthSpec
from syncd.kit.errors import AuthError
from syncd.kit.http import ProviderHttp
from syncd.providers.meta.pages import PageMessagingConnector, managed_pages


class InstagramConnector(PageMessagingConnector):
    token_field = "accessToken"
    account_field = "igUserId"
    oauth: ClassVar[OAuthSpec | None] = OAuthSpec(
        authorize_url="/dialog/oauth",
        # The consent dialog is on www.facebook.com, the token endpoint on the Graph API root.
        token_url="{meta}/oauth/access_token",
        scopes=("instagram_basic", "instagram_manage_messages"),
        base_url_key="meta_www",
        scope_separator=",",
    )

    @classmethod
    def credentials_from_oauth(
        cls, token: dict[str, Any], *, client_id: str, client_secret: str
    ) -> dict[str, Any]:
        """The token endpoint's ``access_token`` (see ``finish_oauth``) and the app secret (the
        OAuth client secret); ``verifyToken`` comes from the operator's OAuth app configuration."""
        return {"accessToken": token["access_token"], "appSecret": client_secret}

    @classmethod
    async def finish_oauth(cls, credentials: dict[str, Any], http: ProviderHttp) -> dict[str, Any]:
        """The Instagram account linked to the user's Page, with that Page's token (what the
        messaging API takes with Facebook Login). Several such accounts: ``settings.igUserId``
        names one, and the user token is kept as it is."""
        pages = await managed_pages(cls, http, credentials["accessToken"], "id,name,access_token,instagram_business_account")
        linked = [p for p in pages if (p.get("instagram_business_account") or {}).get("id")]
        if not linked:
            raise AuthError("no Instagram professional account is linked to the connected user's Pages")
        if len(linked) > 1 or not linked[0].get("access_token"):
            return credentials
        page = linked[0]
        return {**credentials, "igUserId": str(page["instagram_business_account"]["id"]),
                "accessToken": page["access_token"]}


CONNECTOR = InstagramConnector
