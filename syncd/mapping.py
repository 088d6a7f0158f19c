"""Declarative platform mappings: the schema of ``mappings/<platform>.yaml``, its loader, and
the field transforms.

A mapping file says how a platform's chat, message and user payloads become the universal
model, and how an outgoing universal message becomes the platform's request body. It is
validated at load time against a pydantic schema *and* against the universal model's fields,
so a wrong file fails at start with the file, the field and what is wrong::

    platform: chat
    message:
      externalMessageId: {template: "{ctx.channel}:{ts}", required: true}
      sentAt: {path: ts, transform: slack_ts}
    send:
      channel: {path: externalChatId}

Rule keys: exactly one of ``path`` (a dotted path, or a list tried in order; ``ctx.`` reads
the context the connector passes), ``template`` (``{path}`` placeholders; no value if any is
missing), ``const``, ``cases``; then optional ``transform`` (one name or a list, applied in
order), ``default`` and ``required``.
"""

from __future__ import annotations

import email.utils
import re
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from syncd.mapping_compiler import PLACEHOLDER, SectionFn, compile_section
from syncd.universal import ChatData, MessageData, OutgoingMessage, UserData

# --------------------------------------------------------------------------------------
# transforms


def _slack_ts(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value), tz=UTC)


def _epoch_ms(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def _iso8601(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _rfc2822(value: Any) -> datetime:
    parsed = email.utils.parsedate_to_datetime(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# The address forms nearly every header uses -- ``a@b.example``, ``Name <a@b.example>``,
# ``"Last, First" <a@b.example>`` -- are split by one regular expression; anything else goes
# to ``email.utils``, whose answer the fast path reproduces exactly (tests compare the two).
_ATOM = r"[A-Za-z0-9_%+'-]+"
_WS = r"[ \t\r\n]*"  # what email.utils skips; not \s, which takes Unicode spaces too
_ADDR = rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_SIMPLE_ADDRESS = re.compile(
    rf"{_WS}(?:({_ADDR})|(?:\"([^\"\\\r\n]*)\"|({_ATOM}(?:[ \t]+{_ATOM})*))?{_WS}<({_ADDR})>){_WS}")
_SPACES = re.compile(r"[ \t]+")


def parse_address(value: str) -> tuple[str, str]:
    """``(name, address)`` of one address header value, as ``email.utils.parseaddr`` says."""
    match = _SIMPLE_ADDRESS.fullmatch(value)
    if match is None:
        return email.utils.parseaddr(value)
    bare, quoted, words, address = match.groups()
    if bare is not None:
        return "", bare
    return quoted if quoted is not None else _SPACES.sub(" ", words or ""), address


def _email_address(value: Any) -> str | None:
    return parse_address(str(value))[1].lower() or None


def _message_id(value: Any) -> str | None:
    """A Message-ID without its angle brackets (APIs write it both ways)."""
    return str(value).strip().removeprefix("<").removesuffix(">").strip() or None


def _email_name(value: Any) -> str | None:
    return parse_address(str(value))[0] or None


def _email_list(value: Any) -> list[str]:
    values = [str(v) for v in (value if isinstance(value, list) else [value])]
    matches = [_SIMPLE_ADDRESS.fullmatch(part) for v in values if '"' not in v for part in v.split(",")]
    if len(matches) == sum(v.count(",") + 1 for v in values) and all(matches):
        addresses = [m.group(1) or m.group(4) for m in matches]  # type: ignore[union-attr]
    else:
        # Quoted names may hold commas; groups, comments and the unusual need the full parser.
        addresses = [a for _, a in email.utils.getaddresses(values)]
    return [a.lower() for a in addresses if a]


#: What marks an id that ``_id_min6`` lengthened (or escaped, because it began so itself).
_PADDED = "~pad:"


def _id_min6(value: Any) -> str:
    """An id as a platform that wants at least 6 characters takes it: unchanged when it is that
    long, else prefixed. Ids that begin with the prefix are prefixed again, so two app ids never
    give one platform id; ``_id_min6_back`` undoes it."""
    text = str(value)
    return text if len(text) >= 6 and not text.startswith(_PADDED) else _PADDED + text


def _id_min6_back(value: Any) -> str:
    text = str(value)
    return text[len(_PADDED):] if text.startswith(_PADDED) else text


def _first(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "present": lambda v: v is not None,
    "lower": lambda v: str(v).lower(),
    "strip": lambda v: str(v).strip(),
    "slack_ts": _slack_ts,
    "epoch_s": lambda v: datetime.fromtimestamp(float(v), tz=UTC),
    "epoch_ms": _epoch_ms,
    "iso8601": _iso8601,
    "rfc2822_date": _rfc2822,
    "email_address": _email_address,
    "email_name": _email_name,
    "message_id": _message_id,
    "email_list": _email_list,
    "first": _first,
    "list": lambda v: v if isinstance(v, list) else [v],
    "nonempty": lambda v: v if v not in ("", [], {}) else None,
    # A stable UUID named by the value (an idempotency key derived from a message id).
    "uuid5": lambda v: str(uuid.uuid5(uuid.NAMESPACE_URL, str(v))),
    # An app id sent where a platform needs 6 characters or more, and the same id read back.
    "id_min6": _id_min6,
    "id_min6_back": _id_min6_back,
}

# --------------------------------------------------------------------------------------
# schema


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    when: str
    equals: Any = None
    value: Any


class Rule(BaseModel):
    """How one target field gets its value."""

    model_config = ConfigDict(extra="forbid")

    path: str | list[str] | None = None
    template: str | None = None
    const: Any = None
    cases: list[Case] | None = None
    transform: str | list[str] | None = None
    default: Any = None
    required: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> Rule:
        given = [k for k in ("path", "template", "const", "cases") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of path, template, const, cases (got {given or 'none'})")
        for name in self.transforms:
            if name not in TRANSFORMS:
                raise ValueError(f"unknown transform {name!r}; known: {', '.join(sorted(TRANSFORMS))}")
        return self

    @property
    def transforms(self) -> list[str]:
        if self.transform is None:
            return []
        return [self.transform] if isinstance(self.transform, str) else list(self.transform)


Section = dict[str, Rule]


class MappingSections(BaseModel):
    """The ``mapping:`` part of a manifest. Universal sections are checked against the model's
    field names; ``sections`` holds named ones that requests, webhook events or a platform's
    module use by name (a send result, a delivery status)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message: Section = Field(default_factory=dict)
    chat: Section = Field(default_factory=dict)
    user: Section = Field(default_factory=dict)
    send: Section = Field(default_factory=dict)
    edit: Section = Field(default_factory=dict)
    delete: Section = Field(default_factory=dict)
    sections: dict[str, Section] = Field(default_factory=dict)


UNIVERSAL: dict[str, type[BaseModel]] = {"message": MessageData, "chat": ChatData, "user": UserData}
OUTGOING_SOURCES = set(OutgoingMessage(chat=ChatData(external_chat_id="x")).as_source())


class MappingError(Exception):
    """A mapping file that cannot be used, or a payload a mapping cannot handle."""

    def __init__(self, file: str, field: str, problem: str):
        super().__init__(f"{file}: {field}: {problem}")
        self.file, self.field, self.problem = file, field, problem


def _model_fields(model: type[BaseModel]) -> dict[str, Any]:
    """camelCase alias -> field info, for validating dotted targets."""
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def _check_target(model: type[BaseModel], target: str) -> str | None:
    head, _, rest = target.partition(".")
    fields = _model_fields(model)
    if head not in fields:
        return f"unknown field {head!r}; {model.__name__} has: {', '.join(sorted(fields))}"
    if not rest:
        return None
    annotation = fields[head].annotation
    if head == "extra":
        return None
    nested = next(
        (a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type) and issubclass(a, BaseModel)),
        None,
    )
    if nested is None:
        return f"{head!r} has no sub-fields"
    return _check_target(nested, rest)


class Mapping:
    """A platform's loaded, validated mapping sections."""

    def __init__(self, platform: str, spec: MappingSections, file: str):
        self.spec = spec
        self.file = file
        self.platform = platform
        sections = {name: getattr(spec, name) for name in ("message", "chat", "user", "send", "edit", "delete")}
        #: Every section compiled into one function (``fn.source`` shows its code).
        self.compiled: dict[str, SectionFn] = {
            name: compile_section(section, TRANSFORMS, self._failure(name), f"{platform}_{name}")
            for name, section in {**sections, **spec.sections}.items()
        }

    def has(self, name: str) -> bool:
        """Whether section ``name`` exists and has rules."""
        return bool(self.spec.sections.get(name) or getattr(self.spec, name, None)) if name != "sections" else False

    def _failure(self, section: str) -> Callable[[str, str], MappingError]:
        return lambda target, problem: MappingError(self.file, f"mapping.{section}.{target}", problem)

    def _apply(self, name: str, source: dict[str, Any], ctx: dict[str, Any] | None) -> dict[str, Any]:
        if not isinstance(source, dict):
            raise MappingError(self.file, name, f"expected an object, got {type(source).__name__}")
        return self.compiled[name](source, ctx or {})

    def _universal(self, name: str, model: type[BaseModel], raw: dict[str, Any], ctx: dict[str, Any] | None) -> Any:
        data = self._apply(name, raw, ctx)
        try:
            # The model's own validator: what model_validate calls, without its per-call setup.
            return model.__pydantic_validator__.validate_python(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise MappingError(self.file, f"mapping.{name}.{where}", first["msg"]) from None

    def message(self, raw: dict[str, Any], ctx: dict[str, Any] | None = None) -> MessageData:
        return self._universal("message", MessageData, raw, ctx)

    def chat(self, raw: dict[str, Any], ctx: dict[str, Any] | None = None) -> ChatData:
        return self._universal("chat", ChatData, raw, ctx)

    def user(self, raw: dict[str, Any], ctx: dict[str, Any] | None = None) -> UserData:
        return self._universal("user", UserData, raw, ctx)

    def outgoing(self, kind: Literal["send", "edit", "delete"], out: OutgoingMessage) -> dict[str, Any]:
        return self._apply(kind, out.as_source(), None)

    def section(self, name: str, raw: dict[str, Any], ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """A section by name, universal or named, mapped to a plain dict (not validated)."""
        if name not in self.compiled:
            raise MappingError(self.file, f"mapping.{name}", "no such section in the mapping")
        return self._apply(name, raw, ctx)

    def validated(self, name: str, model: type[BaseModel], raw: dict[str, Any], ctx: dict[str, Any] | None = None) -> Any:
        """Section ``name`` mapped and validated as ``model`` (``MessageData`` and the like)."""
        if name not in self.compiled:
            raise MappingError(self.file, f"mapping.{name}", "no such section in the mapping")
        return self._universal(name, model, raw, ctx)


def validate_sections(spec: MappingSections, file: str) -> None:
    """Targets of universal sections are fields of the model; outgoing sections read only what
    an outgoing message has. ``MappingError`` names the file, the section path and the problem."""
    for name, model in UNIVERSAL.items():
        for target in getattr(spec, name):
            problem = _check_target(model, target)
            if problem:
                raise MappingError(file, f"mapping.{name}.{target}", problem)
    for name in ("send", "edit", "delete"):
        for target, rule in getattr(spec, name).items():
            paths = [rule.path] if isinstance(rule.path, str) else (rule.path or [])
            paths += PLACEHOLDER.findall(rule.template or "")
            for path in paths:
                head = path.split(".")[0]
                if head not in OUTGOING_SOURCES:
                    raise MappingError(
                        file, f"mapping.{name}.{target}",
                        f"unknown source {head!r}; outgoing messages have: {', '.join(sorted(OUTGOING_SOURCES))}",
                    )


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A manifest file's top-level mapping; ``MappingError`` when unreadable or not a mapping."""
    file = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(file, "-", f"cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MappingError(file, "-", f"not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise MappingError(file, "-", "the file must be a mapping of sections")
    return raw


def load_mapping(path: str | Path) -> Mapping:
    """The ``mapping:`` part of one manifest file, validated (the rest of the manifest is the
    platform kit's to validate: ``syncd.kit.loader``)."""
    file = str(path)
    raw = read_yaml(path)
    try:
        spec = MappingSections.model_validate(raw.get("mapping") or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise MappingError(file, ".".join(["mapping", *(str(p) for p in first["loc"])]), first["msg"]) from None
    validate_sections(spec, file)
    return Mapping(str(raw.get("platform") or Path(path).stem), spec, file)


def mappings_dir() -> Path:
    """Where the built-in manifests are: the checkout's ``mappings/``, or the install's."""
    checkout = Path(__file__).resolve().parent.parent / "mappings"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "syncd" / "mappings"


def load_mappings(directory: str | Path | None = None, platforms: list[str] | None = None) -> dict[str, Mapping]:
    """The mappings of every ``<platform>.yaml`` in ``directory`` (default: the built-in ones)."""
    root = Path(directory) if directory else mappings_dir()
    names = platforms or sorted(p.stem for p in root.glob("*.yaml"))
    out: dict[str, Mapping] = {}
    for name in names:
        mapping = load_mapping(root / f"{name}.yaml")
        if mapping.platform != name:
            raise MappingError(str(root / f"{name}.yaml"), "platform", f"says {mapping.platform!r}, file is named {name!r}")
        out[name] = mapping
    return out
