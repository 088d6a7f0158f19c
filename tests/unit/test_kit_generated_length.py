"""A generated credential may declare its length (a platform that limits the value's size)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from syncd.kit.credentials import generate_missing
from syncd.kit.manifest import Manifest


def manifest(**field: object) -> Manifest:
    return Manifest.model_validate({"platform": "p", "credentials": {"hookToken": {"secret": True, **field}}})


@pytest.mark.parametrize(("kind", "length", "expected"), [("hex", 32, 32), ("hex", None, 40),
                                                          ("token", 16, 16), ("token", None, 32)])
def test_a_generated_value_has_the_declared_length(kind, length, expected):
    value = generate_missing(manifest(generate=kind, length=length), {})["hookToken"]
    assert len(value) == expected
    if kind == "hex":
        assert all(c in "0123456789abcdef" for c in value)


def test_a_given_value_is_kept_and_an_impossible_length_refused():
    assert generate_missing(manifest(generate="hex", length=32), {"hookToken": "mine"}) == {"hookToken": "mine"}
    with pytest.raises(ValidationError):
        manifest(generate="hex", length=500)
