"""The credentials of a mailbox and the connection settings they imply."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

Security = Literal["ssl", "starttls", "none"]
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_HOST = re.compile(r"^[A-Za-z0-9.\-:\[\]]+$")
DEFAULT_PORTS = {("imap", "ssl"): 993, ("imap", "starttls"): 143, ("imap", "none"): 143,
                 ("smtp", "ssl"): 465, ("smtp", "starttls"): 587, ("smtp", "none"): 587}


class ImapCredentials(BaseModel):
    """``{email, password, username?, imapHost, imapPort?, imapSecurity?, smtpHost, smtpPort?,
    smtpSecurity?}``. Security defaults: IMAP ``ssl`` (993), SMTP ``starttls`` (587); a
    missing port follows the security. ``password`` is a secret: kept out of ``repr``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    email: str
    password: str = Field(min_length=1, repr=False)
    username: str | None = None
    imap_host: str
    imap_port: int | None = Field(default=None, ge=1, le=65535)
    imap_security: Security = "ssl"
    smtp_host: str
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_security: Security = "starttls"

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str) -> str:
        value = value.strip()
        if not _EMAIL.match(value):
            raise ValueError("must be an email address such as user@example.com")
        return value

    @field_validator("imap_host", "smtp_host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        value = value.strip()
        if not value or not _HOST.match(value):
            raise ValueError("must be a host name or IP address such as imap.example.com")
        return value

    @model_validator(mode="after")
    def _default_ports(self) -> ImapCredentials:
        if self.imap_port is None:
            self.imap_port = DEFAULT_PORTS[("imap", self.imap_security)]
        if self.smtp_port is None:
            self.smtp_port = DEFAULT_PORTS[("smtp", self.smtp_security)]
        return self

    @property
    def login(self) -> str:
        """The user name for IMAP and SMTP: ``username``, else the address."""
        return self.username or self.email
