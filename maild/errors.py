"""The one exception tree of maild.

Normal outcomes (a message ignored, a request refused, a take-in deferred) are
values, never exceptions. These classes are for faults only, and every library
error is translated into one of them where it enters maild, so callers catch
``MaildError`` (or a branch of it) and nothing else::

    MaildError
    ├── ConfigError        bad configuration file: names the key and the reason
    ├── RulesError         bad classification rules data under config/
    ├── TemplateError      a reply template is missing or fails to render
    ├── ParseError         raised only by strict helpers; parse_message never raises
    ├── StoreError         the database refused or failed
    │   └── StoreUnavailable    the database itself is out of reach or out of space: retry, the data is fine
    ├── SourceError        the mailbox (IMAP or Maildir) failed
    │   └── SourceUnavailable   transient: reconnect with backoff
    └── TransportError     the SMTP server (or reply Maildir) failed
        └── TransportUnavailable  transient: retry later
            └── TransportDeferred   this reply alone refused for now (4xx, dropped under it)
"""

from __future__ import annotations


class MaildError(Exception):
    """Root of every fault maild raises on purpose."""


class ConfigError(MaildError):
    """The configuration is invalid; ``key`` is the dotted key at fault."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


class RulesError(MaildError):
    """The classification rules file is invalid."""


class TemplateError(MaildError):
    """A reply template is missing or failed to render."""


class ParseError(MaildError):
    """A value could not be parsed where strictness was asked for."""


class StoreError(MaildError):
    """The database failed; the transaction was rolled back."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or written just now; the same work will succeed later."""


class SourceError(MaildError):
    """The mailbox failed in a way that retrying will not fix."""


class SourceUnavailable(SourceError):
    """The mailbox is unreachable for now; reconnect with backoff."""


class TransportError(MaildError):
    """Sending a reply failed permanently (the recipient was refused)."""


class TransportUnavailable(TransportError):
    """The SMTP server is unreachable for now; keep the reply and retry."""


class TransportDeferred(TransportUnavailable):
    """The server refused this reply for now (4xx) or dropped the connection under it; the others go on."""
