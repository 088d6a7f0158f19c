"""The ``imap`` platform: any mailbox over IMAP (reading) and SMTP (sending)."""
