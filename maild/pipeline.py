"""The triage pipeline: one raw message in, one ``Disposition`` out.

The stages are a short explicit list, each a pure function over frozen
records: parse -> screen -> classify -> authorize -> schedule. The daemon,
the dry-run CLI and the tests all go through ``Triager.triage``, so what the
CLI shows is exactly what the daemon does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from maild.authorizer import authorize, resolve_administration
from maild.classifier import classify
from maild.hours import ServiceCalendar
from maild.parsing import parse_message
from maild.records import Category, Decision, Disposition, ParsedMessage
from maild.rules import Rules, load_rules
from maild.screener import screen
from maild.screening_rules import ScreeningRules, load_screening
from maild.settings import Settings


@dataclass(frozen=True, slots=True)
class Triager:
    """Everything triage needs, loaded once: settings, rules, calendar, screening data."""

    settings: Settings
    rules: Rules
    calendar: ServiceCalendar
    screening: ScreeningRules
    own_addresses: frozenset[str] = field(init=False)
    """Every address of the help desk itself, lower case: the loop guard (worked out once, not per message)."""

    def __post_init__(self) -> None:
        aliases = (a for adm in self.settings.administrations for a in adm.addresses)
        own = frozenset(a.lower() for a in (self.settings.helpdesk.address, *aliases))
        object.__setattr__(self, "own_addresses", own)

    @classmethod
    def from_settings(cls, settings: Settings, *, compiled: bool = True) -> Triager:
        """``compiled``: the rules' templates now, else on first use (see ``Rules.compile``)."""
        rules = load_rules(settings.triage.rules, compiled=compiled)
        return cls(settings, rules, ServiceCalendar(settings.service_hours), load_screening())

    def triage(self, raw: bytes, *, now: datetime, received_at: datetime | None = None) -> Disposition:
        """Run every stage on ``raw``; ``received_at`` overrides the headers."""
        message = parse_message(raw, self.settings.limits)
        return self.decide(message, received_at=received_at or received_time(message, now))

    def decide(self, message: ParsedMessage, *, received_at: datetime) -> Disposition:
        """The stages after parsing, for callers that already hold the record."""
        screened = screen(message, self.own_addresses, self.screening)
        if not screened.human:
            return self._disposition(message, Category.OTHER, Decision.IGNORED, None, "it",
                                     received_at, screened.reasons, scheduled=False)
        classified = classify(message, self.rules, self.settings.triage.default_language)
        administration, adm_reason = resolve_administration(message, self.settings.administrations)
        reasons = (*screened.reasons, *classified.reasons, adm_reason)
        decision = Decision.ACCEPTED
        if classified.category.privileged:
            auth = authorize(message, administration, self.settings.helpdesk.trusted_authserv_ids)
            reasons = (*reasons, *auth.reasons)
            decision = Decision.ACCEPTED if auth.authorized else Decision.REJECTED
        name = administration.name if administration else None
        return self._disposition(message, classified.category, decision, name, classified.language,
                                 received_at, reasons, scheduled=True)

    def _disposition(
        self, message: ParsedMessage, category: Category, decision: Decision, administration: str | None,
        language: str, received_at: datetime, reasons: tuple[str, ...], *, scheduled: bool,
    ) -> Disposition:
        # Refused attempts are taken in too: a person reviews every security event.
        take_in = self.calendar.take_in(received_at) if scheduled else None
        if take_in is not None:
            reasons = (*reasons, *self.calendar.explain(received_at, take_in))
        return Disposition(
            message=message, category=category, decision=decision, administration=administration,
            priority=self.settings.priorities.of(category), language=language,
            received_at=received_at, take_in=take_in, reasons=reasons,
        )


def received_time(message: ParsedMessage, now: datetime) -> datetime:
    """The topmost Received date, else Date, else ``now`` (the CLI contract)."""
    return message.received_at or message.date or now
