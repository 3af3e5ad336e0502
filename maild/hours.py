"""Service hours: when the help desk takes a request in.

A request received inside service hours is taken in at once; one received
outside is taken in at the next opening. The week, holidays and closure days
come from ``ServiceHours``; nothing here reads the clock, so the same inputs
always give the same take-in, in tests, dry runs and replays alike.

Instants are compared in UTC only. Python compares two datetimes that share a
``tzinfo`` by wall clock and ignores ``fold``, so comparing local times would
get the repeated hour of an autumn DST change wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta

import holidays

from maild.errors import ConfigError
from maild.records import TakeIn
from maild.settings import WEEKDAYS, ServiceHours

SEARCH_DAYS = 400
"""How far ahead to look for an opening: a year of closures is a config fault."""

CLOSURE_DAY = "closure day"


class ServiceCalendar:
    """Opening hours of one help desk, with its holidays and closure days.

    Holiday tables are built on first use, one year at a time, and kept in the
    instance: building one costs far more than a lookup, and a daemon asks
    about the same few years all day long. The service period of each day is
    kept the same way: it depends on the day and the configuration only, and
    working it out (holidays, DST-aware opening instants) costs more than the
    rest of the scheduling of a message.
    """

    __slots__ = ("_holidays", "_hours", "_periods")

    def __init__(self, hours: ServiceHours) -> None:
        if len(hours.week) != 7:
            raise ConfigError("service_hours.week", f"must list 7 days, not {len(hours.week)}")
        if all(day is None for day in hours.week):
            raise ConfigError("service_hours.week", "no opening hours")
        for name, opening in zip(WEEKDAYS, hours.week, strict=True):
            if opening is not None and opening.closes <= opening.opens:
                raise ConfigError(f"service_hours.week.{name}", "closing time must be after opening time")
        self._hours = hours
        self._holidays: dict[int, Mapping[date, str]] = {}
        self._periods: dict[date, tuple[datetime, datetime] | None] = {}

    # ------------------------------------------------------------------
    # Days

    def holiday_name(self, day: date) -> str | None:
        """Why ``day`` is closed although its weekday is not: a holiday or a closure day."""
        day = _plain_date(day)
        name = self._holidays_of(day.year).get(day)
        if name is not None:
            return name
        return CLOSURE_DAY if day in self._hours.closed_dates else None

    def is_opening_day(self, day: date) -> bool:
        """A day with opening hours that is neither a holiday nor a closure day."""
        day = _plain_date(day)
        return self._hours.week[day.weekday()] is not None and self.holiday_name(day) is None

    # ------------------------------------------------------------------
    # Instants

    def is_open(self, at: datetime) -> bool:
        """Whether the help desk is open at the instant ``at`` (opening inclusive, closing exclusive)."""
        instant = _utc(at, "at")
        period = self._period(instant.astimezone(self._hours.timezone).date())
        return period is not None and period[0] <= instant < period[1]

    def next_opening(self, after: datetime) -> datetime:
        """The first opening instant at or after ``after``, in the service time zone.

        An opening instant is the start of a day's service period, so inside
        service hours this is the next day's opening, not ``after`` itself.
        """
        instant = _utc(after, "after")
        start = instant.astimezone(self._hours.timezone).date()
        for offset in range(SEARCH_DAYS + 1):
            period = self._period(start + timedelta(days=offset))
            if period is not None and period[0] >= instant:
                return period[0].astimezone(self._hours.timezone)
        raise ConfigError("service_hours", f"no opening within {SEARCH_DAYS} days after {start}")

    def take_in(self, received_at: datetime) -> TakeIn:
        """At once inside service hours, else at the next opening."""
        if self.is_open(received_at):
            return TakeIn(take_in_at=received_at.astimezone(self._hours.timezone), in_hours=True)
        return TakeIn(take_in_at=self.next_opening(received_at), in_hours=False)

    def explain(self, received_at: datetime, take_in: TakeIn | None = None) -> tuple[str, ...]:
        """Human-readable reasons for the take-in time, one per line, for logs and dry runs;
        ``take_in``: ``self.take_in(received_at)`` when the caller has it already."""
        tz = self._hours.timezone
        local = _utc(received_at, "received_at").astimezone(tz)
        reasons = [f"received {_format(local)} ({WEEKDAYS[local.weekday()].capitalize()})"]
        take_in = take_in or self.take_in(received_at)
        if take_in.in_hours:
            return (*reasons, f"within service hours {self._span(local.date())}: taken in at once")
        reasons.append(f"{local.date()}: {self._why_closed_at(local)}")
        day = local.date() + timedelta(days=1)
        while day < take_in.take_in_at.date():
            reasons.append(f"{day}: {self._why_closed_on(day)}")
            day += timedelta(days=1)
        return (*reasons, f"taken in at {_format(take_in.take_in_at)}: the next opening")

    # ------------------------------------------------------------------
    # Internals

    def _holidays_of(self, year: int) -> Mapping[date, str]:
        """Public holidays of one year, named in English (not the country's own language, not LANG)."""
        table = self._holidays.get(year)
        if table is None:
            hours = self._hours
            try:
                built = holidays.country_holidays(
                    hours.country, subdiv=hours.subdivision, years=year, language="en_US"
                )
            except NotImplementedError as exc:
                key = "service_hours.subdivision" if hours.subdivision else "service_hours.country"
                region = f"{hours.country}/{hours.subdivision or '-'}"
                raise ConfigError(key, f"no holiday calendar for {region}") from exc
            # A plain copy: the library's mapping grows itself on lookups of other years.
            table = self._holidays[year] = dict(built)
        return table

    def _period(self, day: date) -> tuple[datetime, datetime] | None:
        """The service period of ``day`` as UTC instants, or None when closed all day."""
        if day in self._periods:
            return self._periods[day]
        period = self._periods[day] = self._work_out_period(day)
        return period

    def _work_out_period(self, day: date) -> tuple[datetime, datetime] | None:
        opening = self._hours.week[day.weekday()]
        if opening is None or self.holiday_name(day) is not None:
            return None
        opens = _first_instant(day, opening.opens, self._hours)
        closes = _first_instant(day, opening.closes, self._hours)
        # Both ends inside one DST gap leave nothing open that day.
        return (opens, closes) if opens < closes else None

    def _span(self, day: date) -> str:
        opening = self._hours.week[day.weekday()]
        return "closed" if opening is None else f"{opening.opens:%H:%M}-{opening.closes:%H:%M}"

    def _why_closed_at(self, local: datetime) -> str:
        """Why the desk is closed on the day a message arrived, at that time."""
        period = self._period(local.date())
        if period is None:
            return self._why_closed_on(local.date())
        if local.astimezone(UTC) < period[0]:
            return f"before opening time ({self._span(local.date())})"
        return f"after closing time ({self._span(local.date())})"

    def _why_closed_on(self, day: date) -> str:
        """Every reason a whole day is closed."""
        why = []
        if self._hours.week[day.weekday()] is None:
            why.append(f"closed on {WEEKDAYS[day.weekday()].capitalize()}s")
        holiday = self._holidays_of(day.year).get(day)
        if holiday is not None:
            why.append(f"public holiday ({holiday})")
        if day in self._hours.closed_dates:
            why.append(CLOSURE_DAY)
        return "; ".join(why) or "no service period (the opening falls in a clock change)"


def _utc(at: datetime, name: str) -> datetime:
    """``at`` as a UTC instant; a naive datetime is a programming fault, not a guess."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {at!r}")
    return at.astimezone(UTC)


def _plain_date(day: date) -> date:
    """Refuse a datetime where a date is meant: its date depends on a zone we were not told."""
    if isinstance(day, datetime):
        raise TypeError(f"expected a date, got the datetime {day!r}")
    return day


def _first_instant(day: date, wall: time, hours: ServiceHours) -> datetime:
    """The first UTC instant at which the local clock on ``day`` reads ``wall`` or later.

    Usually the one instant that wall time names. When the clock goes back and
    shows it twice, the first time. When the clock jumps over it, the moment
    of the jump, the first moment the clock shows a later time.
    """
    naive = datetime.combine(day, wall)
    tz = hours.timezone
    low, high = sorted(naive.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1))
    if low.astimezone(tz).replace(tzinfo=None) == naive:
        return low
    # In a gap: the clock reads before ``naive`` at ``low`` and after it at
    # ``high``. Transitions fall on whole seconds, so bisect in seconds.
    before, after = 0, int((high - low).total_seconds())
    while after - before > 1:
        middle = (before + after) // 2
        if (low + timedelta(seconds=middle)).astimezone(tz).replace(tzinfo=None) >= naive:
            after = middle
        else:
            before = middle
    return low + timedelta(seconds=after)


def _format(local: datetime) -> str:
    seconds = ":%S" if local.second or local.microsecond else ""
    return local.strftime(f"%Y-%m-%d %H:%M{seconds} %Z")

