"""Request bodies of the admin API (they also document it in /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from syncd.models import ClientId


class _In(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def _storable_keys(value: Any, path: str = "settings") -> None:
    """MongoDB reads a key that starts with ``$`` as an operator and one with ``.`` as a path:
    neither may come from a client, at any depth."""
    if isinstance(value, dict):
        for key, inner in value.items():
            where = f"{path}.{key}"
            if not isinstance(key, str) or key.startswith("$") or "." in key or "\x00" in key:
                raise ValueError(f"key {where!r} may not start with '$' nor contain '.' or NUL")
            _storable_keys(inner, where)
    elif isinstance(value, list):
        for item in value:
            _storable_keys(item, path)


class CreateIntegration(_In):
    platform: str = Field(min_length=1, max_length=64)
    customer_id: ClientId
    name: str | None = Field(default=None, max_length=512)
    #: Empty for a platform that hands its credentials over later (a plugin it calls).
    credentials: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] | None = None

    @field_validator("credentials", "settings")
    @classmethod
    def _keys(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        _storable_keys(value, to_camel(info.field_name or ""))
        return value


class SmoochIntegration(BaseModel):
    """Smooch's Create Integration body, unchanged: the integration ``type`` (a platform or one of
    its aliases), an optional ``displayName``, and the platform's credentials at the top level,
    by syncd's names or Smooch's argument names."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1, max_length=64, description="a platform or one of its aliases (GET /platforms)")
    display_name: str | None = Field(default=None, alias="displayName", max_length=512,
                                     description="the integration's name")

    @model_validator(mode="after")
    def _keys(self) -> SmoochIntegration:
        for key, value in self.arguments.items():
            _storable_keys({key: value}, "body")
        return self

    @property
    def arguments(self) -> dict[str, Any]:
        """The platform's credentials: every argument but ``type`` and ``displayName``."""
        return dict(self.model_extra or {})


class UpdateCredentials(_In):
    credentials: dict[str, Any]

    @field_validator("credentials")
    @classmethod
    def _keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        _storable_keys(value, "credentials")
        return value


class ImportChats(_In):
    external_chat_ids: list[ClientId] = Field(min_length=1, max_length=1000)


class Pause(_In):
    reason: str | None = Field(default=None, max_length=1000)


class Resync(_In):
    chat_ids: list[ClientId] | None = Field(default=None, max_length=10000)
    full: StrictBool = False


class UserPlatformIn(_In):
    customer_id: ClientId
    platform: str = Field(min_length=1, max_length=64)
    external_user_id: ClientId
    external_email: str | None = Field(default=None, max_length=512)
    display_name: str | None = Field(default=None, max_length=512)
    integration_id: ClientId | None = None
    is_self: StrictBool = False


def view(model: BaseModel) -> dict[str, Any]:
    """A stored document as the API answers it (camelCase, JSON types)."""
    return model.model_dump(by_alias=True, mode="json")
