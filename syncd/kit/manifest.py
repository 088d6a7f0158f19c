"""The schema of a platform manifest (``mappings/<platform>.yaml``): the whole platform as data.

A manifest declares identity and capabilities, the API root, the credential and settings
schemas, authentication, one request per operation (with its paginator and record selector),
error classification, webhook verification and handshakes, how a webhook delivery becomes
changes, and the field mappings onto the universal model and back. Every model forbids unknown
keys, so a misspelt key anywhere stops the daemon at start with the file, the path and the
problem (``syncd.kit.loader``). ``python -m syncd.kit.loader --schema`` prints it as JSON
Schema (``mappings/manifest.schema.json``), so editors check a manifest as it is typed. The
``webhook`` part of the schema is ``syncd.kit.manifest_webhook``; the strict base model and the
conditions both parts use are ``syncd.kit.manifest_base``.

Strings in requests, verifiers and handshakes are templates: ``{credentials.token}``,
``{chat.externalChatId}``, ``{cursor}``, ``{webhookUrl}``, ``{header.x-name}``, ``{query.p}``,
``{body}`` (see ``syncd.kit.templates``). A value that is exactly one placeholder keeps its type
and, when missing, drops the parameter it fills.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from pydantic.alias_generators import to_camel

from syncd.kit.manifest_base import Condition, Strict
from syncd.kit.manifest_webhook import Webhook
from syncd.mapping import MappingSections

# -- identity, capabilities, API ------------------------------------------------------------


class Capabilities(Strict):
    """What the platform can do; the engine branches on these, never on a platform's name."""

    history: bool = False
    poll: bool = False
    send: bool = True
    edit: bool = False
    delete: bool = False
    webhooks: bool = True
    list_chats: bool = False
    list_users: bool = False


class Intervals(Strict):
    poll_s: float | None = Field(default=None, gt=0)
    maintain_s: float | None = Field(default=None, gt=0)
    full_sync_s: float | None = Field(default=None, gt=0)


class RateLimit(Strict):
    """The platform's documented request budget for one account: ``requests`` per ``perS``
    seconds (quota units where ``costs`` are given). A documented fact, with its ``source``;
    the benchmarks measure an import against it."""

    requests: int = Field(gt=0)
    per_s: float = Field(gt=0)
    #: Quota units a request costs, by a regular expression searched in ``METHOD /path`` of
    #: the request (the first that matches counts); a request none matches costs 1.
    costs: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    #: Whose budget it is, in the documentation's words ("per method and workspace").
    scope: str | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _patterns(self) -> RateLimit:
        for pattern in self.costs:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"costs: {pattern!r} is not a regular expression ({exc})") from None
        return self

    def reads_per_s(self) -> float:
        """Reads (GETs, what an import sends) per second the budget allows, each priced at the
        dearest GET it names: a floor, so the lanes an importer opens for it are not too many."""
        dearest = max((c for p, c in self.costs.items() if p.lstrip("^").startswith("GET")), default=1)
        return self.requests / self.per_s / max(1, dearest)


class Api(Strict):
    #: The documented API root; ``SYNCD_<BASE_URL_KEY>_BASE_URL`` replaces it.
    root: str = Field(pattern=r"^https?://")
    #: The name of the root when several platforms share it (a vendor's Graph API); default: the platform.
    base_url_key: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    #: Further named roots (an OAuth consent page on another host), each replaceable the same way.
    roots: dict[str, Annotated[str, Field(pattern=r"^https?://")]] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = Field(None, gt=0)
    #: Items per page asked of list and history requests, where the request says ``{pageSize}``.
    page_size: int = Field(100, gt=0)
    #: The platform's documented request budget (see ``RateLimit``): the importer opens enough
    #: lanes to reach it (it does not pace by it: a 429 does), the benchmarks measure imports
    #: against it.
    rate_limit: RateLimit | None = None
    #: A credential holding the root, for a platform whose API lives at a URL it hands over when
    #: it connects (each customer's own instance); used when set, before any configured root.
    #: While it is empty every request fails as unauthorised (nothing can be reached yet).
    root_credential: str | None = None


class SetupLink(Strict):
    #: The key the creation answer names the URL by (also a top-level field of it), e.g. ``pluginUrl``.
    name: str = Field(pattern=r"^[a-z][A-Za-z0-9]*Url$")
    #: ``{publicUrl}``, ``{integrationId}``, ``{platform}`` and ``{value}`` (the generated value).
    url: str = Field(pattern=r"^\{publicUrl\}/")


class CredentialField(Strict):
    type: Literal["string", "integer", "boolean"] = "string"
    required: bool = True
    #: Redacted everywhere by value, never answered back.
    secret: bool = False
    #: Generated when absent (a webhook secret or verify token the user pastes at the platform).
    generate: Literal["token", "hex"] | None = None
    #: The generated value's length in characters (a platform that limits it); default 40 hex
    #: characters or 32 URL-safe ones.
    length: int | None = Field(None, ge=8, le=64)
    #: Other names accepted for this field (Smooch's argument names).
    aliases: list[str] = Field(default_factory=list)
    pattern: str | None = None
    #: What the refusal says when the value does not match ``pattern`` (the value itself is
    #: never echoed): "not a bot token: expected '<id>:<secret>'".
    pattern_message: str | None = None
    description: str | None = None
    #: Shown where to paste a generated value (``setup``), e.g. "Webhook verify token".
    setup: str | None = None
    #: A URL that carries the generated value, answered once with it (a plugin URL whose last
    #: segment is the secret, for a platform that signs nothing).
    link: SetupLink | None = None


class EnvironmentValue(Strict):
    """A platform-level value the operator gives as ``SYNCD_<PLATFORM>_<NAME>`` (``webhookSecret``
    -> ``SYNCD_<PLATFORM>_WEBHOOK_SECRET``); templates read it as ``{environment.<name>}``."""

    secret: bool = False
    description: str | None = None


class SettingField(Strict):
    type: Literal["string", "integer", "number", "boolean", "array", "object"] = "string"
    description: str | None = None
    default: Any = None


# -- authentication ------------------------------------------------------------------------


class Auth(Strict):
    """How requests are authenticated; one ``httpx.Auth`` runs every kind (``syncd.kit.auth``).

    ``bearer``: ``Authorization: Bearer <token>``; ``header``: ``<header>: <value>``;
    ``query``: ``?<param>=<value>``; ``path``: ``prefix`` before every request path
    (``/bot{credentials.botToken}``); ``basic``: ``username``/``password``; ``oauth2``: a bearer
    token refreshed at ``tokenUrl`` before expiry and on 401, the new tokens stored; ``oauth1``:
    OAuth 1.0a user context, every request signed HMAC-SHA1 with ``consumerKey``/``consumerSecret``
    and the user's ``token``/``tokenSecret`` (RFC 5849, by oauthlib).
    """

    type: Literal["none", "bearer", "header", "query", "path", "basic", "oauth2", "oauth1"] = "none"
    token: str | None = None
    header: str | None = None
    param: str | None = None
    value: str | None = None
    prefix: str | None = None
    username: str | None = None
    password: str | None = None
    token_url: str | None = None
    refresh_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scopes: list[str] = Field(default_factory=list)
    consumer_key: str | None = None
    consumer_secret: str | None = None
    token_secret: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Auth:
        needs = {"bearer": ("token",), "header": ("header", "value"), "query": ("param", "value"),
                 "path": ("prefix",), "basic": ("username", "password"),
                 "oauth2": ("token", "token_url", "refresh_token"),
                 "oauth1": ("consumer_key", "consumer_secret", "token", "token_secret")}.get(self.type, ())
        missing = [to_camel(n) for n in needs if getattr(self, n) is None]
        if missing:
            raise ValueError(f"auth type {self.type!r} needs {', '.join(missing)}")
        return self


# -- requests ------------------------------------------------------------------------------


class Paginator(Strict):
    """How the next page is asked for. A token that repeats is refused (a buggy API cannot loop).

    ``cursor``: the next token at ``path`` of the answer goes in request parameter ``param``;
    ``next_url``: the answer's ``path`` is the next page's whole URL; ``link_header``: the
    ``rel="next"`` of the ``Link`` header; ``offset``: ``param`` advances by the records read;
    ``page``: ``param`` counts pages from ``start``.
    """

    type: Literal["cursor", "next_url", "link_header", "offset", "page"]
    path: str | None = None
    param: str | None = None
    #: Where the token goes: a query parameter (GET) or a JSON body field (POST APIs).
    into: Literal["params", "body"] = "params"
    start: int = 1
    #: ``next_url`` only: a next URL on another host is requested on the configured root (its
    #: path below the documented root's path, and its query), so credentials go nowhere else.
    rebase: bool = False
    #: The answer names a next page even after the last one (an event log read up to now): a
    #: page whose ``records`` selection is empty, before ``where``, is the last.
    stop_on_empty: bool = False

    @model_validator(mode="after")
    def _complete(self) -> Paginator:
        needs = {"cursor": ("path", "param"), "next_url": ("path",), "offset": ("param",), "page": ("param",)}
        missing = [n for n in needs.get(self.type, ()) if getattr(self, n) is None]
        if missing:
            raise ValueError(f"paginator {self.type!r} needs {', '.join(missing)}")
        return self


class Request(Strict):
    """One HTTP call of an operation, and how its answer becomes records."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    #: Relative to the API root (so requests never leave it); placeholder values are escaped.
    path: str = Field(pattern=r"^/")
    params: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    #: A JSON/form body of templates, or the name of a ``mapping`` section that builds it
    #: from the outgoing message (``send``/``edit``/``delete`` or a named section).
    body: dict[str, Any] | None = None
    body_mapping: str | None = None
    #: The name of a ``mapping`` section that builds request headers from the outgoing message
    #: (an idempotency key derived from the app's message id), added to ``headers``.
    headers_mapping: str | None = None
    encoding: Literal["json", "form"] = "json"
    #: The records of the answer: a selector (``messages``, ``data.items[]``, ``.`` = the answer).
    records: str | None = None
    #: The mapping section each record goes through.
    map: str | None = None
    #: Extra mapping context (templates), e.g. ``{channel: "{chat.externalChatId}"}``.
    ctx: dict[str, Any] = Field(default_factory=dict)
    #: Keep only records that match (``{path, equals|in|present}``).
    where: list[Condition] = Field(default_factory=list)
    paginator: Paginator | None = None
    #: A mapping section turning the answer into a send result (``externalMessageId``, ``sentAt``).
    result: str | None = None


MarkFormat = Literal["epoch_s", "epoch_ms", "iso8601", "slack_ts"]


class Reconcile(Request):
    """How a send whose answer was lost is looked for at the platform before it is sent again
    (``Connector.reconcile_send``). Declared where the platform keeps something of the app's
    message that syncd sent with it (a metadata field, a client id).

    The request's templates read ``{message.*}``, ``{chat.*}`` and ``{since}``: when syncd
    first registered the send, less ``windowS``, written as ``timeFormat``. Its records (every
    page) are searched for the first that passes every ``match`` condition, whose expected
    values are templates on the message (``{message.appMessageId}``); a condition whose
    template has no value (no app message id) makes the search say "not found". ``answer``
    (templates on ``{record}``, ``{parent}``, ``{chat}``, ``{message}``; default: the record)
    is what the ``send`` request's ``result`` mapping reads, as if the send had answered it.
    Of several, the first whose ``when`` the outgoing message passes is used.
    """

    when: list[Condition] = Field(default_factory=list)
    match: list[Condition] = Field(min_length=1)
    answer: Any = None
    window_s: float = Field(300, gt=0)
    time_format: MarkFormat = "epoch_s"

    @model_validator(mode="after")
    def _compares(self) -> Reconcile:
        if not any(c.equals is not None for c in self.match):
            raise ValueError("a reconcile match needs a condition with equals (what the sent message carries)")
        return self


class Poll(Strict):
    """An incremental read: the ``history`` request per chat with ``since`` added, from the
    stored high-water mark minus the look-back window."""

    request: Literal["history"] = "history"
    param: str
    #: How the mark is written in the parameter.
    format: MarkFormat = "epoch_s"


class Requests(Strict):
    identify: Request | None = None
    list_chats: Request | None = None
    history: Request | None = None
    list_users: Request | None = None
    send: Request | None = None
    edit: Request | None = None
    delete: Request | None = None
    register_webhook: Request | None = None
    unregister_webhook: Request | None = None
    #: Finding a send whose answer was lost (``Reconcile``); the first that applies is used.
    reconcile_send: list[Reconcile] = Field(default_factory=list)
    #: Further requests a platform's module calls by name (``self.named("replies")``), so their
    #: paths, parameters, paging and filters are data too.
    named: dict[str, Request] = Field(default_factory=dict)


# -- errors --------------------------------------------------------------------------------


class ErrorRule(Strict):
    """Answers matching ``status`` (any of; ``"4xx"`` is a whole class) and every condition are
    classified as ``as``."""

    #: Statuses that match (any of): codes, or a class such as ``"5xx"``.
    status: list[int | Annotated[str, Field(pattern=r"^[1-5]xx$")]] | int | Annotated[str, Field(pattern=r"^[1-5]xx$")] \
        = Field(default_factory=list)
    when: list[Condition] = Field(default_factory=list)
    as_: Literal["rate_limited", "auth", "transient", "permanent", "cursor_expired", "already_done", "ok"] = Field(
        alias="as")
    #: Where the error code is (named in the error message; never the platform's free text).
    code: str | None = None
    #: Seconds to wait: a header (``retry-after``) or a body path (``parameters.retry_after``).
    retry_after_header: str | None = None
    retry_after_path: str | None = None
    #: Seconds to wait when the answer says nothing (in-body throttling that lasts minutes).
    retry_after_default: float | None = Field(None, ge=0)
    #: The error's message, a template on ``{code}``, ``{status}`` and ``{body.<path>}`` (the
    #: platform's own description, where it says more than a code). Every secret of the
    #: integration is scrubbed from it; when a placeholder is missing the generic message is used.
    message: str | None = None
    #: A name for this kind of failure that a platform's module can act on (``exc.reason``).
    reason: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_status(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("status"), (int, str)):
            data = {**data, "status": [data["status"]]}
        if isinstance(data, dict) and isinstance(data.get("status"), list):
            data = {**data, "status": [n for s in data["status"] for n in _statuses(s)]}
        return data


def _statuses(value: Any) -> list[Any]:
    """``"5xx"`` as the hundred codes it names; anything else as it is (checked as an int)."""
    if isinstance(value, str) and len(value) == 3 and value[0] in "12345" and value[1:] == "xx":
        return list(range(int(value[0]) * 100, int(value[0]) * 100 + 100))
    return [value]


# -- connecting -----------------------------------------------------------------------------


class CreationToken(Strict):
    """A connect link that the platform itself opens (``GET /connect/{platform}?token=``) with a
    short-lived token good for creating one connection: syncd trades the token for the
    integration's credentials with ``request`` and creates the integration. The token is the
    link's only credential (no admin token, no signed link)."""

    #: The credential the token stands in for while ``request`` runs (its auth reads it).
    credential: str
    #: The named request (``requests.named``) that trades the token; its templates read
    #: ``{connect.id}`` (a new random id per connection) and ``{connect.customerId}``.
    request: str
    #: The integration's credentials: credential name -> path in the answer.
    credentials: dict[str, str]
    #: The path in the answer naming the platform account: the customer when the link names none.
    account: str | None = None
    #: The path in the answer naming the connection (the integration's name).
    name: str | None = None
    #: The settings the integration is created with.
    settings: dict[str, Any] = Field(default_factory=dict)


class Connect(Strict):
    creation_token: CreationToken | None = None


# -- the manifest --------------------------------------------------------------------------


class Manifest(Strict):
    platform: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str | None = None
    #: Other names the platform answers to (a short name).
    aliases: list[str] = Field(default_factory=list)
    docs: str | None = None
    #: Another built-in manifest whose ``mapping`` this one starts from (a platform that speaks
    #: another's payloads, e.g. propagated webhooks): this manifest's sections are merged over
    #: it, field by field.
    mapping_from: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    capabilities: Capabilities = Field(default_factory=Capabilities)
    intervals: Intervals = Field(default_factory=Intervals)
    api: Api | None = None
    credentials: dict[str, CredentialField] = Field(default_factory=dict)
    #: Platform-level values from the environment (``SYNCD_<PLATFORM>_<NAME>``).
    environment: dict[str, EnvironmentValue] = Field(default_factory=dict)
    settings: dict[str, SettingField] = Field(default_factory=dict)
    auth: Auth = Field(default_factory=Auth)
    requests: Requests = Field(default_factory=Requests)
    poll: Poll | None = None
    errors: list[ErrorRule] = Field(default_factory=list)
    webhook: Webhook = Field(default_factory=Webhook)
    #: Ways of connecting besides ``POST /integrations`` that the manifest declares.
    connect: Connect = Field(default_factory=Connect)
    mapping: MappingSections = Field(default_factory=MappingSections)

    @model_validator(mode="after")
    def _connect_names_what_is_declared(self) -> Manifest:
        spec = self.connect.creation_token
        if spec is None:
            return self
        if spec.request not in self.requests.named:
            raise ValueError(f"connect.creationToken.request {spec.request!r} is not a named request")
        unknown = [n for n in (spec.credential, *spec.credentials) if n not in self.credentials]
        if unknown:
            raise ValueError(f"connect.creationToken names undeclared credentials: {', '.join(unknown)}")
        return self


Request.model_rebuild()
Reconcile.model_rebuild()
