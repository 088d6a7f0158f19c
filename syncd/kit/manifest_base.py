"""What every part of a manifest's schema shares: strict models with camelCase keys, and
conditions on a JSON document (an answer, a record, a webhook body)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Strict(BaseModel):
    """Every manifest model: camelCase keys, nothing unknown."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class Condition(Strict):
    """A test on a JSON document (an answer, a record, a webhook body). ``of`` picks what
    ``path`` reads in a record selection: the record, the object enclosing it, or the whole body.
    A list of paths reads the first that has a value, as in mapping rules."""

    path: str | list[str]
    of: Literal["record", "parent", "root"] = "record"
    equals: Any = None
    in_: list[Any] | None = Field(None, alias="in")
    not_equals: Any = None
    present: bool | None = None
    #: The value is a string containing this text (a platform's fixed error description).
    contains: str | None = None
