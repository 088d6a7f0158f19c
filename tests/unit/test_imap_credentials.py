"""The imap platform's credentials: defaults, validation, the secret kept out of
``repr``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from syncd.providers.imap.credentials import ImapCredentials

BASE = {"email": "me@example.com", "password": "hunter2-secret", "imapHost": "imap.example.com",
        "smtpHost": "smtp.example.com"}


def test_defaults_are_993_ssl_and_587_starttls_and_the_username_is_the_address():
    c = ImapCredentials.model_validate(BASE)
    assert (c.imap_port, c.imap_security, c.smtp_port, c.smtp_security) == (993, "ssl", 587, "starttls")
    assert c.login == "me@example.com"
    assert "hunter2-secret" not in repr(c)


def test_ports_follow_the_security_chosen_and_username_wins():
    c = ImapCredentials.model_validate({**BASE, "imapSecurity": "starttls", "smtpSecurity": "ssl", "username": "me"})
    assert (c.imap_port, c.smtp_port, c.login) == (143, 465, "me")


@pytest.mark.parametrize("change", [{"imapSecurity": "tls"}, {"email": "nobody"}, {"imapPort": 0},
                                    {"smtpHost": "bad host"}, {"password": ""}, {"popHost": "x"}])
def test_wrong_fields_are_refused(change):
    with pytest.raises(ValidationError):
        ImapCredentials.model_validate({**BASE, **change})
