"""``syncd chats list`` and ``syncd messages list`` refuse what they cannot ask the API, before asking
(the listings themselves run against a real daemon in tests/e2e/test_e2e_cli.py)."""

from __future__ import annotations

import pytest

from syncd.cli import main

API = ["--api", "http://127.0.0.1:9", "--token", "t" * 24]  # nothing listens: a request would fail


@pytest.mark.parametrize(("argv", "expected"), [
    (["messages", "list", "--chat", "c1", "--limit", "0"], "--limit: must be 1 to 500 (got 0)"),
    (["messages", "list", "--chat", "c1", "--limit", "501"], "--limit: must be 1 to 500 (got 501)"),
    (["messages", "list", "--chat", "c1", "--limit", "ten"], "--limit: not a number: 'ten'"),
    (["messages", "list", "--chat", "c1", "--all", "--cursor", "abc"], "not allowed with argument"),
    (["messages", "list"], "the following arguments are required: --chat"),
    (["chats", "lists"], "invalid choice: 'lists'"),
])
def test_bad_arguments_are_a_usage_error_naming_the_option(argv, expected, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*argv, *API])

    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


def test_chats_list_without_a_filter_says_which_to_give():
    with pytest.raises(SystemExit) as exited:
        main(["chats", "list", *API])

    assert exited.value.code == "error: give --integration or --customer (or both)"


def test_an_unreachable_daemon_is_one_line():
    with pytest.raises(SystemExit) as exited:
        main(["messages", "list", "--chat", "c1", *API])

    assert str(exited.value.code).startswith("error: cannot reach syncd at http://127.0.0.1:9")
