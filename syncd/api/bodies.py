"""Request bodies of the admin API (they also document it in /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _In(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class CreateIntegration(_In):
    platform: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=512)
    name: str | None = Field(default=None, max_length=512)
    credentials: dict[str, Any]
    settings: dict[str, Any] | None = None


class UpdateCredentials(_In):
    credentials: dict[str, Any]


class ImportChats(_In):
    external_chat_ids: list[str] = Field(min_length=1, max_length=1000)


class Resync(_In):
    chat_ids: list[str] | None = Field(default=None, max_length=10000)
    full: bool = False


class UserPlatformIn(_In):
    customer_id: str = Field(min_length=1, max_length=512)
    platform: str = Field(min_length=1, max_length=64)
    external_user_id: str = Field(min_length=1, max_length=512)
    external_email: str | None = Field(default=None, max_length=512)
    display_name: str | None = Field(default=None, max_length=512)
    integration_id: str | None = None
    is_self: bool = False


def view(model: BaseModel) -> dict[str, Any]:
    """A stored document as the API answers it (camelCase, JSON types)."""
    return model.model_dump(by_alias=True, mode="json")
