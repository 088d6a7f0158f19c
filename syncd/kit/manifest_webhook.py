"""The webhook part of a manifest's schema (``webhook:``): how a delivery proves where it comes
from (verifiers), the handshakes answered without storing anything, the delivery's own id, which
verified deliveries are kept, and how their records become universal data (event rules).

See ``syncd.kit.manifest`` for the manifest as a whole and its templates.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from syncd.kit.manifest_base import Condition, Strict


class JwtClaim(Strict):
    """What one JWT claim must be: ``equals`` a template, or the hex SHA-256 of the ``sha256``
    payload template (``{body}`` = the raw body, ``{webhookUrl}`` = the public URL); with
    ``absentIfEmpty`` the claim must be missing when that payload is empty (a body hash that
    is only sent for a body), else it is required."""

    equals: str | None = None
    sha256: str | None = None
    absent_if_empty: bool = False

    @model_validator(mode="after")
    def _one(self) -> JwtClaim:
        if (self.equals is None) == (self.sha256 is None):
            raise ValueError("a JWT claim is checked by one of equals or sha256")
        return self


JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512"]


class KeySet(Strict):
    """Where a platform publishes the public keys its tokens are signed with (a JSON Web Key
    Set): ``path`` on the API root named ``root`` (the main root's key or one of ``api.roots``,
    so ``SYNCD_<ROOT>_BASE_URL`` moves it like any root)."""

    root: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    path: str = Field(pattern=r"^/")


class Verifier(Strict):
    """How a delivery proves it comes from the platform.

    ``hmac``: the ``header`` (after ``prefix``) is the ``encoding`` of HMAC-``algorithm`` keyed
    with ``key`` over the ``payload`` template (``{body}``, ``{url}``, ``{header.x}``,
    ``{formSorted}``, ``{publicUrl}``); with ``timestampHeader`` the delivery must be within the
    replay window.
    ``token``: a shared secret in ``header`` or query ``param`` equals ``value``.
    ``jwt``: an HMAC-signed JWT (``algorithms``) in ``header`` (after ``prefix``) signed with
    ``key``; ``nbf``/``exp``/``iat`` are checked against syncd's clock with ``leewayS``,
    ``require`` names claims that must be present, ``claims`` checks claims' values.
    ``oidc``: an OpenID Connect ID token the platform signed (RSA, ``algorithms``) with one of
    the keys published at ``jwks`` (fetched, and kept as long as its answer's cache lifetime
    allows); ``iss`` must be one of ``issuers``, ``aud`` one of ``audiences`` (templates; the
    ones that render empty are left out), ``exp`` is required, ``claims`` and ``trueClaims``
    check the signer (a service account's ``email`` and ``email_verified``).
    """

    type: Literal["hmac", "token", "jwt", "oidc"]
    header: str | None = None
    param: str | None = None
    #: The signature is a field of the delivery itself (``signature.signature``), read from the
    #: parsed delivery, which templates read as ``{delivery.<path>}``.
    path: str | None = None
    #: With ``path``: the delivery's own timestamp (epoch seconds), which must be within the
    #: replay window.
    timestamp_path: str | None = None
    prefix: str = ""
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    key: str | None = None
    payload: str = "{body}"
    encoding: Literal["hex", "base64"] = "hex"
    value: str | None = None
    timestamp_header: str | None = None
    #: The key for deliveries to the shared webhook URL (``{environment.webhookSecret}``).
    shared_key: str | None = None
    #: What the timestamp header counts: seconds or milliseconds since the epoch.
    timestamp_unit: Literal["s", "ms"] = "s"
    #: ``hmac`` only: the key is the hex digest of ``key`` rendered (a per-delivery key derived
    #: from the secret and a header: ``sha256("{header.x-timestamp};{credentials.secret}")``).
    key_digest: Literal["sha256"] | None = None
    #: ``hmac`` only: a header the answer carries with the (derived) key, proving that syncd
    #: holds the secret (a platform that drops a webhook whose answer lacks it).
    answer_header: str | None = None
    #: A credential that must be set for this verifier to apply (an optional signing key).
    only_if: str | None = None
    #: A signed URL (``{url}``, ``{publicUrl}``) is also accepted with its default port (:443,
    #: :80) added or removed, as proxies change it.
    any_default_port: bool = False
    #: A body that is not a form is covered by this query parameter of the signed URL: the hex
    #: SHA-256 of the raw body, which must be present and match.
    body_digest_param: str | None = None
    #: Checked only when the delivery carries this verifier's header or param: a platform
    #: that authenticates a delivery in one of several ways. A delivery must then pass at least
    #: one verifier, and every one whose header or param it carries.
    if_present: bool = False
    #: ``jwt``/``oidc``: the algorithms accepted (never ``none``); default HS256 for ``jwt``,
    #: RS256 for ``oidc``; the claims required and checked.
    algorithms: list[JwtAlgorithm] = Field(default_factory=list)
    require: list[str] = Field(default_factory=list)
    claims: dict[str, JwtClaim] = Field(default_factory=dict)
    leeway_s: float = Field(0, ge=0)
    #: ``oidc`` only.
    jwks: KeySet | None = None
    issuers: list[str] = Field(default_factory=list)
    audiences: list[str] = Field(default_factory=list)
    true_claims: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> Verifier:
        if self.header is None and self.param is None and self.path is None:
            raise ValueError("a verifier reads a header, a query param or a path of the delivery")
        if self.type in ("hmac", "jwt") and self.key is None:
            raise ValueError(f"a {self.type} verifier needs key")
        if self.type == "token" and self.value is None:
            raise ValueError("a token verifier needs value")
        if self.type == "oidc" and (self.jwks is None or not self.issuers or not self.audiences):
            raise ValueError("an oidc verifier needs jwks, issuers and audiences")
        family = "RS" if self.type == "oidc" else "HS"
        if any(not a.startswith(family) for a in self.algorithms):
            raise ValueError(f"a {self.type} verifier takes only {family} algorithms")
        if self.type != "hmac" and (self.key_digest or self.answer_header):
            raise ValueError("keyDigest and answerHeader belong to an hmac verifier")
        return self

    def accepted_algorithms(self) -> list[str]:
        return list(self.algorithms) or (["RS256"] if self.type == "oidc" else ["HS256"])


class Handshake(Strict):
    """A verification request the platform sends, answered without storing anything.

    ``echo``: a GET whose query ``param`` is answered back as text, when ``token`` (a query
    parameter) equals ``expect`` (``hub.challenge``). ``challenge``: a (signed) JSON
    body matching ``when`` answered with ``answer`` (a ``url_verification``). ``crc``: a
    GET whose query ``param`` is answered as ``{field: prefix + base64(HMAC-SHA256(key, it))}``.
    """

    type: Literal["echo", "challenge", "crc"]
    param: str | None = None
    token: str | None = None
    expect: str | None = None
    #: ``echo``: further query parameters the request must carry with these values
    #: (``hub.mode: subscribe``).
    query: dict[str, str] = Field(default_factory=dict)
    #: ``echo``: the status a refused handshake is answered with (a JSON error), instead of
    #: 401; e.g. 403, as some platforms document.
    refuse_status: int | None = Field(None, ge=400, le=499)
    when: list[Condition] = Field(default_factory=list)
    answer: dict[str, Any] | None = None
    key: str | None = None
    field: str = "response_token"
    prefix: str = ""


class DeliveryId(Strict):
    """Where the delivery's own id is; the body's digest when absent or not given. With
    ``records`` the id is made of every selected record's own id at ``path`` (a batch of events
    each with its id: the same events redelivered, flagged or regrouped, are the same delivery)."""

    header: str | None = None
    path: str | None = None
    #: A template on ``{body.x}`` and ``{header.x}``; a list: the first that resolves (deliveries
    #: of several kinds, each with its own id).
    template: str | list[str] | None = None
    records: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> DeliveryId:
        if self.records is not None and self.path is None:
            raise ValueError("a delivery id read from records needs path")
        return self


class Selection(Strict):
    """The records ``records`` picks out of a document (``entry[].messaging[]``; ``.`` = the
    document) that match every condition of ``when``."""

    records: str = "."
    when: list[Condition] = Field(default_factory=list)


class EventRule(Selection):
    """Records of a delivery that become universal data: each record selected by ``records``
    (``entry[].messaging[]``; ``.`` = the body) that matches ``when`` goes through the mapping
    section ``map`` and becomes ``as``. ``poll``/``resync`` ask the engine for one instead."""

    map: str | None = None
    as_: Literal["message", "chat", "user", "poll", "resync", "ignore"] = Field("message", alias="as")
    ctx: dict[str, Any] = Field(default_factory=dict)
    #: A named request (``requests.named``) called per record (its templates read ``record``
    #: and ``parent``); its answer, not the record, goes through ``map``. For details a
    #: delivery lacks (a chat's name from a profile API). Answers are cached per connector; a
    #: refused call (unknown, blocked) leaves the record out of this rule.
    fetch: str | None = None
    #: Named requests (``requests.named``) called per record once the delivery is stored
    #: (``stored``: a reply confirmed) or once storing it failed for good (``failed``: the
    #: action handed back); their templates read ``record``, ``parent`` and ``root``.
    follow_up: FollowUpRequests | None = None


class FollowUpRequests(Strict):
    stored: str | None = None
    failed: str | None = None


class SharedWebhook(Strict):
    """One URL for every integration of the platform (``/webhooks/{platform}``), where the
    platform posts for many accounts at once (a reusable app set up once by its vendor)."""

    #: The body path naming the account: the integration whose own user (``identify``) it is.
    account: str
    #: An integration setting that, when true, says its deliveries come to the shared URL:
    #: syncd then registers no webhook of its own for it.
    setting: str


class Webhook(Strict):
    verify: list[Verifier] = Field(default_factory=list)
    #: ``all``: a delivery must pass every verifier that applies. ``any``: one of those whose
    #: header or parameter it carries (a current and a legacy scheme); carrying none is refused.
    verify_mode: Literal["all", "any"] = "all"
    shared: SharedWebhook | None = None
    handshakes: list[Handshake] = Field(default_factory=list)
    delivery_id: DeliveryId = Field(default_factory=DeliveryId)
    #: What a delivery is parsed as: ``params`` is the query's parameters and a form body's
    #: fields together (a platform that calls back with GET query parameters or form posts).
    format: Literal["json", "form", "params"] = "json"
    #: Headers the events read later (kept with the stored delivery), lower case.
    keep_headers: list[str] = Field(default_factory=list)
    #: A verified delivery is stored only when each selection finds a record in it; others
    #: (another product's or another account's, where one app serves many) are acknowledged
    #: and dropped.
    accept: list[Selection] = Field(default_factory=list)
    #: A verified delivery that is not what the platform sends (not JSON, no delivery id):
    #: ``refuse`` answers 400; ``ignore`` acknowledges it and stores nothing (a platform that
    #: posts payloads of its own kind to the same URL, or would redeliver a refusal forever).
    malformed: Literal["refuse", "ignore"] = "refuse"
    events: list[EventRule] = Field(default_factory=list)
    #: Only deliveries matching every condition are stored; other verified ones (notices,
    #: and bodies that are not JSON, which the platform posts to the same URL) are answered
    #: and dropped. Empty: every delivery is stored, and one that is not JSON is answered 400.

    #: The answer to an accepted delivery (status and JSON body or text).
    answer_status: int = 200
    answer_body: Any = None
    answer_media_type: str = "application/json"
    #: Where to paste the webhook URL and what else to configure at the platform.
    setup: str | None = None
    #: What syncd cannot undo at the platform when an integration is disconnected (the user
    #: removes it): the webhook URL pasted in a dashboard.
    manual_teardown: str | None = None
