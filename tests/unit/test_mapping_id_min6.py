"""The ``id_min6`` transform: an app id as a platform that needs 6 characters or more takes it,
the same every time, and ``id_min6_back`` reads it back."""

from __future__ import annotations

import pytest

from syncd.mapping import TRANSFORMS

pad, back = TRANSFORMS["id_min6"], TRANSFORMS["id_min6_back"]


@pytest.mark.parametrize("app_id", ["1", "m1", "abcde", "abcdef", "app-msg-0", "~pad:", "~pad:x", "~pad:abcdef", 42])
def test_every_id_comes_back_and_is_at_least_6_characters(app_id):
    assert len(pad(app_id)) >= 6
    assert back(pad(app_id)) == str(app_id)
    assert pad(app_id) == pad(app_id)


def test_ids_long_enough_are_unchanged_and_short_ones_are_prefixed():
    assert pad("abcdef") == "abcdef" and pad("m1") == "~pad:m1"


def test_two_ids_never_share_a_padded_id():
    ids = ["m1", "~pad:m1", "~pad:~pad:m1", "abcdef", "~pad:abcdef", "1", "~pad:1"]
    assert len({pad(i) for i in ids}) == len(ids)
