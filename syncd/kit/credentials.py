"""A manifest's credential schema as a pydantic model, generated values, and secret values.

The model refuses unknown fields (the 422 names the field), accepts each field's aliases
(Smooch's argument names), hides secret fields from ``repr`` and never echoes input in its
errors.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    create_model,
)
from pydantic.alias_generators import to_snake

from syncd.kit.manifest import CredentialField, Manifest

_TYPES: dict[str, type] = {"string": str, "integer": int, "boolean": bool}


class ManifestCredentials(BaseModel):
    """Base of every generated credentials model."""

    # A numeric id posted as a JSON number is kept exactly, as text (Python ints are exact).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, hide_input_in_errors=True,
                              coerce_numbers_to_str=True)


def _matching(pattern: str, message: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: Any) -> Any:
        if value is not None and not compiled.search(str(value)):
            raise ValueError(message)
        return value

    return AfterValidator(check)


def _field(name: str, spec: CredentialField) -> tuple[Any, Any]:
    kind: Any = _TYPES[spec.type]
    required = spec.required and spec.generate is None
    annotation = kind if required else kind | None
    constraints: dict[str, Any] = {"min_length": 1} if spec.type == "string" else {}
    if spec.pattern and spec.pattern_message:
        # The pattern alone decides (an empty value gets the same message).
        annotation, constraints = Annotated[annotation, _matching(spec.pattern, spec.pattern_message)], {}
    elif spec.pattern:
        constraints["pattern"] = spec.pattern
    return annotation, Field(
        ... if required else None, alias=name, validation_alias=AliasChoices(name, *spec.aliases),
        repr=not spec.secret, description=spec.description,
        json_schema_extra={"secret": spec.secret, "generated": spec.generate is not None}, **constraints,
    )


def credentials_model(manifest: Manifest) -> type[BaseModel]:
    fields = {to_snake(name): _field(name, spec) for name, spec in manifest.credentials.items()}
    return create_model(f"{manifest.platform.title()}Credentials", __base__=ManifestCredentials, **fields)  # type: ignore[call-overload]


def generate_missing(manifest: Manifest, credentials: dict[str, Any]) -> dict[str, Any]:
    """``credentials`` with every absent generated field filled in (no I/O)."""
    out = dict(credentials)
    for name, spec in manifest.credentials.items():
        if spec.generate and not any(out.get(key) for key in (name, *spec.aliases)):
            out[name] = _generated(spec)
    return out


def _generated(spec: CredentialField) -> str:
    if spec.generate == "hex":
        return secrets.token_hex(32)[:spec.length or 40]
    return secrets.token_urlsafe(48)[:spec.length or 32]


def secret_values(manifest: Manifest, credentials: BaseModel) -> list[str]:
    data = credentials.model_dump(by_alias=True)
    return [str(data[n]) for n, s in manifest.credentials.items() if s.secret and data.get(n)]
