"""Service hours: take-in times, holidays, closure days, DST and time zones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.errors import ConfigError
from maild.hours import ServiceCalendar
from maild.settings import OpeningHours, ServiceHours

ROME = ZoneInfo("Europe/Rome")
IST = timezone(timedelta(hours=5, minutes=30))

DEFAULT = ServiceHours()
GENOA = ServiceHours(subdivision="GE")
CHRISTMAS_EVE_CLOSED = ServiceHours(closed_dates=frozenset({date(2026, 12, 24)}))
NO_SATURDAY = replace(DEFAULT, week=(*DEFAULT.week[:5], None, None))
SUNDAY_MORNINGS = replace(DEFAULT, week=(*DEFAULT.week[:6], OpeningHours(time(8), time(12))))
GERMANY = ServiceHours(country="DE")


def rome(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    """Wall time in Rome, written like ``datetime``'s positional fields."""
    return datetime(y, mo, d, h, mi, s, us, tzinfo=ROME)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def same_instant(a: datetime, b: datetime) -> bool:
    """Compare in UTC: same-zone comparison ignores fold."""
    return a.astimezone(UTC) == b.astimezone(UTC)


TAKE_IN_CASES = [
    # id, hours, received, expected take-in, in hours
    ("tuesday-before-opening", DEFAULT, rome(2026, 3, 10, 7, 10), rome(2026, 3, 10, 8), False),
    ("at-opening-instant", DEFAULT, rome(2026, 3, 10, 8), rome(2026, 3, 10, 8), True),
    ("last-microsecond-open", DEFAULT, rome(2026, 3, 10, 16, 59, 59, 999999),
     rome(2026, 3, 10, 16, 59, 59, 999999), True),
    ("closing-exclusive", DEFAULT, rome(2026, 3, 10, 17), rome(2026, 3, 11, 8), False),
    ("friday-evening", DEFAULT, rome(2026, 3, 13, 20), rome(2026, 3, 14, 8), False),
    ("saturday-13-59-open", DEFAULT, rome(2026, 3, 14, 13, 59), rome(2026, 3, 14, 13, 59), True),
    ("saturday-14-00-closed", DEFAULT, rome(2026, 3, 14, 14), rome(2026, 3, 16, 8), False),
    ("sunday", DEFAULT, rome(2026, 3, 15, 10), rome(2026, 3, 16, 8), False),
    ("saturday-before-easter-2027", DEFAULT, rome(2027, 3, 27, 14), rome(2027, 3, 30, 8), False),
    ("easter-sunday-2027", DEFAULT, rome(2027, 3, 28, 10), rome(2027, 3, 30, 8), False),
    ("easter-monday-2027", DEFAULT, rome(2027, 3, 29, 10), rome(2027, 3, 30, 8), False),
    ("saturday-before-easter-2026", DEFAULT, rome(2026, 4, 4, 15), rome(2026, 4, 7, 8), False),
    ("st-francis-2025-not-yet-holiday", DEFAULT, rome(2025, 10, 4, 10), rome(2025, 10, 4, 10), True),
    ("st-francis-2026-sunday-opening", SUNDAY_MORNINGS, rome(2026, 10, 4, 9), rome(2026, 10, 5, 8), False),
    ("st-francis-2027-monday", DEFAULT, rome(2027, 10, 4, 9), rome(2027, 10, 5, 8), False),
    ("24-june-without-subdivision", DEFAULT, rome(2026, 6, 24, 10), rome(2026, 6, 24, 10), True),
    ("24-june-genoa", GENOA, rome(2026, 6, 24, 10), rome(2026, 6, 25, 8), False),
    ("closure-day-then-christmas", CHRISTMAS_EVE_CLOSED, rome(2026, 12, 24, 10), rome(2026, 12, 28, 8), False),
    ("christmas-eve-without-closure", DEFAULT, rome(2026, 12, 24, 10), rome(2026, 12, 24, 10), True),
    ("autumn-dst-2026", DEFAULT, rome(2026, 10, 24, 15), utc(2026, 10, 26, 7), False),
    ("all-saints-sunday-2026", DEFAULT, rome(2026, 10, 31, 15), utc(2026, 11, 2, 7), False),
    ("spring-dst-2026", DEFAULT, rome(2026, 3, 28, 15), utc(2026, 3, 30, 6), False),
    ("spring-dst-easter-2027", DEFAULT, rome(2027, 3, 27, 15), utc(2027, 3, 30, 6), False),
    ("utc-winter-morning", DEFAULT, utc(2026, 12, 10, 6, 30), rome(2026, 12, 10, 8), False),
    ("utc-summer-evening", DEFAULT, utc(2026, 7, 9, 16, 30), rome(2026, 7, 10, 8), False),
    ("utc-in-hours", DEFAULT, utc(2026, 7, 9, 14), rome(2026, 7, 9, 16), True),
    ("ist-winter-morning", DEFAULT, datetime(2026, 12, 10, 12, 0, tzinfo=IST), rome(2026, 12, 10, 8), False),
    ("ist-in-hours", DEFAULT, datetime(2026, 12, 10, 15, 0, tzinfo=IST), rome(2026, 12, 10, 10, 30), True),
    ("saturday-closed-by-config", NO_SATURDAY, rome(2026, 3, 14, 10), rome(2026, 3, 16, 8), False),
    ("germany-good-friday", GERMANY, rome(2026, 4, 3, 10), rome(2026, 4, 4, 8), False),
    ("germany-republic-day-open", GERMANY, rome(2026, 6, 2, 10), rome(2026, 6, 2, 10), True),
    ("italy-good-friday-open", DEFAULT, rome(2026, 4, 3, 10), rome(2026, 4, 3, 10), True),
]


@pytest.mark.parametrize(
    ("service", "received", "expected", "in_hours"),
    [case[1:] for case in TAKE_IN_CASES],
    ids=[case[0] for case in TAKE_IN_CASES],
)
def test_take_in(service: ServiceHours, received: datetime, expected: datetime, in_hours: bool) -> None:
    result = ServiceCalendar(service).take_in(received)
    assert same_instant(result.take_in_at, expected)
    assert result.take_in_at.tzinfo is ROME
    assert result.in_hours is in_hours


def test_take_in_is_local_wall_time_in_rome() -> None:
    result = ServiceCalendar(DEFAULT).take_in(rome(2026, 10, 24, 15))
    assert result.take_in_at.replace(tzinfo=None) == datetime(2026, 10, 26, 8)
    assert result.take_in_at.utcoffset() == timedelta(hours=1)


HOLIDAY_CASES = [
    (date(2026, 1, 1), "New Year's Day"),
    (date(2026, 1, 6), "Epiphany"),
    (date(2026, 4, 5), "Easter Sunday"),
    (date(2026, 4, 6), "Easter Monday"),
    (date(2027, 3, 28), "Easter Sunday"),
    (date(2027, 3, 29), "Easter Monday"),
    (date(2026, 4, 25), "Liberation Day"),
    (date(2026, 5, 1), "Labor Day"),
    (date(2026, 6, 2), "Republic Day"),
    (date(2026, 8, 15), "Assumption Of Mary Day"),
    (date(2027, 11, 1), "All Saints' Day"),
    (date(2026, 12, 8), "Immaculate Conception"),
    (date(2026, 12, 25), "Christmas Day"),
    (date(2026, 12, 26), "Saint Stephen's Day"),
    (date(2026, 10, 4), "Saint Francis of Assisi, Patron Saint of Italy"),
    (date(2027, 10, 4), "Saint Francis of Assisi, Patron Saint of Italy"),
]


@pytest.mark.parametrize(("day", "name"), HOLIDAY_CASES, ids=[str(c[0]) for c in HOLIDAY_CASES])
def test_italian_public_holidays_are_closed(day: date, name: str) -> None:
    calendar = ServiceCalendar(DEFAULT)
    assert calendar.holiday_name(day) == name
    assert not calendar.is_opening_day(day)
    assert not calendar.is_open(rome(day.year, day.month, day.day, 10))


@pytest.mark.parametrize(
    ("service", "day", "name"),
    [
        (DEFAULT, date(2025, 10, 4), None),
        (DEFAULT, date(2026, 6, 24), None),
        (GENOA, date(2026, 6, 24), "Saint John's Day"),
        (DEFAULT, date(2026, 12, 24), None),
        (CHRISTMAS_EVE_CLOSED, date(2026, 12, 24), "closure day"),
        (DEFAULT, date(2026, 3, 10), None),
        (DEFAULT, date(2026, 3, 15), None),
    ],
)
def test_holiday_name(service: ServiceHours, day: date, name: str | None) -> None:
    assert ServiceCalendar(service).holiday_name(day) == name


@pytest.mark.parametrize(
    ("service", "day", "opening"),
    [
        (DEFAULT, date(2026, 3, 10), True),
        (DEFAULT, date(2026, 3, 14), True),
        (DEFAULT, date(2026, 3, 15), False),
        (NO_SATURDAY, date(2026, 3, 14), False),
        (SUNDAY_MORNINGS, date(2026, 3, 15), True),
        (GENOA, date(2026, 6, 24), False),
        (CHRISTMAS_EVE_CLOSED, date(2026, 12, 24), False),
    ],
)
def test_is_opening_day(service: ServiceHours, day: date, opening: bool) -> None:
    assert ServiceCalendar(service).is_opening_day(day) is opening


@pytest.mark.parametrize(
    ("at", "is_open"),
    [
        (rome(2026, 3, 10, 7, 59, 59, 999999), False),
        (rome(2026, 3, 10, 8), True),
        (rome(2026, 3, 10, 16, 59, 59, 999999), True),
        (rome(2026, 3, 10, 17), False),
        (rome(2026, 3, 14, 13, 59, 59, 999999), True),
        (rome(2026, 3, 14, 14), False),
        (utc(2026, 3, 10, 7), True),
        (utc(2026, 7, 10, 6), True),
        (utc(2026, 7, 10, 5, 59), False),
        (utc(2026, 7, 10, 15), False),
    ],
)
def test_is_open_boundaries(at: datetime, is_open: bool) -> None:
    assert ServiceCalendar(DEFAULT).is_open(at) is is_open


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (rome(2026, 3, 10, 7), rome(2026, 3, 10, 8)),
        (rome(2026, 3, 10, 8), rome(2026, 3, 10, 8)),
        (rome(2026, 3, 10, 8, 0, 0, 1), rome(2026, 3, 11, 8)),
        (rome(2026, 3, 14, 9), rome(2026, 3, 16, 8)),
    ],
)
def test_next_opening_is_the_start_of_a_service_period(after: datetime, expected: datetime) -> None:
    result = ServiceCalendar(DEFAULT).next_opening(after)
    assert same_instant(result, expected)
    assert result.tzinfo is ROME


def _sunday(opens: time, closes: time) -> ServiceHours:
    """Sunday hours inside the 02:00-03:00 hour that DST changes skip or repeat in Rome."""
    return replace(DEFAULT, week=(*DEFAULT.week[:6], OpeningHours(opens, closes)))


@pytest.mark.parametrize(
    ("service", "after", "opening"),
    [
        # Spring: 02:30 does not exist; open when the clock jumps from 02:00 CET to 03:00 CEST.
        (_sunday(time(2, 30), time(12)), rome(2026, 3, 28, 20), utc(2026, 3, 29, 1)),
        # Autumn: 02:30 happens twice; open the first time (02:30 CEST).
        (_sunday(time(2, 30), time(12)), rome(2026, 10, 24, 20), utc(2026, 10, 25, 0, 30)),
    ],
    ids=["gap", "fold"],
)
def test_opening_inside_a_dst_change(service: ServiceHours, after: datetime, opening: datetime) -> None:
    calendar = ServiceCalendar(service)
    assert same_instant(calendar.next_opening(after), opening)
    assert calendar.is_open(opening)
    assert not calendar.is_open(opening - timedelta(microseconds=1))


@pytest.mark.parametrize(
    ("at", "is_open"),
    [
        (utc(2026, 3, 29, 0, 59), True),
        (utc(2026, 3, 29, 1), False),  # 03:00 CEST: the clock jumped past 02:30
        (utc(2026, 10, 25, 0, 29), True),
        (utc(2026, 10, 25, 0, 30), False),  # 02:30 CEST, the first 02:30
        (utc(2026, 10, 25, 1, 10), False),  # 02:10 CET, the repeated hour: already closed
    ],
)
def test_closing_inside_a_dst_change(at: datetime, is_open: bool) -> None:
    assert ServiceCalendar(_sunday(time(0), time(2, 30))).is_open(at) is is_open


def test_service_period_swallowed_by_a_dst_gap_is_skipped() -> None:
    calendar = ServiceCalendar(_sunday(time(2, 15), time(2, 45)))
    assert same_instant(calendar.next_opening(rome(2026, 3, 28, 20)), rome(2026, 3, 30, 8))
    assert same_instant(calendar.next_opening(rome(2026, 3, 21, 20)), rome(2026, 3, 22, 2, 15))


def test_explain_easter() -> None:
    assert ServiceCalendar(DEFAULT).explain(rome(2027, 3, 27, 14)) == (
        "received 2027-03-27 14:00 CET (Saturday)",
        "2027-03-27: after closing time (08:00-14:00)",
        "2027-03-28: closed on Sundays; public holiday (Easter Sunday)",
        "2027-03-29: public holiday (Easter Monday)",
        "taken in at 2027-03-30 08:00 CEST: the next opening",
    )


@pytest.mark.parametrize(
    ("service", "received", "expected"),
    [
        (DEFAULT, rome(2026, 3, 10, 7, 10, 30), (
            "received 2026-03-10 07:10:30 CET (Tuesday)",
            "2026-03-10: before opening time (08:00-17:00)",
            "taken in at 2026-03-10 08:00 CET: the next opening",
        )),
        (DEFAULT, utc(2026, 7, 9, 14), (
            "received 2026-07-09 16:00 CEST (Thursday)",
            "within service hours 08:00-17:00: taken in at once",
        )),
        (CHRISTMAS_EVE_CLOSED, rome(2026, 12, 24, 10), (
            "received 2026-12-24 10:00 CET (Thursday)",
            "2026-12-24: closure day",
            "2026-12-25: public holiday (Christmas Day)",
            "2026-12-26: public holiday (Saint Stephen's Day)",
            "2026-12-27: closed on Sundays",
            "taken in at 2026-12-28 08:00 CET: the next opening",
        )),
    ],
    ids=["before-opening", "in-hours", "closure-day"],
)
def test_explain(service: ServiceHours, received: datetime, expected: tuple[str, ...]) -> None:
    calendar = ServiceCalendar(service)
    assert calendar.explain(received) == expected
    assert calendar.explain(received, calendar.take_in(received)) == expected  # the triage passes its own


def test_holiday_names_are_english_whatever_lang(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.setenv(name, "it_IT.UTF-8")
    assert ServiceCalendar(DEFAULT).holiday_name(date(2026, 12, 25)) == "Christmas Day"


def test_holiday_tables_are_built_once_per_year_per_calendar(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    real: Callable[..., Any] = holidays.country_holidays

    def counting(country: str, **kwargs: Any) -> Any:
        calls.append((country, kwargs["years"]))
        assert kwargs["language"] == "en_US"
        return real(country, **kwargs)

    monkeypatch.setattr(holidays, "country_holidays", counting)
    calendar = ServiceCalendar(GENOA)
    assert calls == []  # lazily: nothing built by the constructor
    for day in range(1, 29):
        calendar.take_in(rome(2026, 2, day, 12))
    calendar.take_in(rome(2026, 12, 31, 18))  # reaches into 2027
    assert calls == [("IT", 2026), ("IT", 2027)]
    ServiceCalendar(GENOA).is_open(rome(2026, 2, 2, 12))
    assert calls == [("IT", 2026), ("IT", 2027), ("IT", 2026)]


@settings(deadline=None, max_examples=50)
@given(st.lists(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31),
                             timezones=st.sampled_from([UTC, ROME])), min_size=1, max_size=20))
def test_a_calendar_answers_the_same_however_many_questions_it_was_asked(instants: list[datetime]) -> None:
    """The calendar keeps what it works out per day; what it keeps never changes an answer."""
    shared = ServiceCalendar(GENOA)
    for received in instants:
        fresh = ServiceCalendar(GENOA)
        assert shared.take_in(received) == fresh.take_in(received)
        assert shared.explain(received) == fresh.explain(received)
        assert shared.is_open(received) is fresh.is_open(received)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.is_open(datetime(2026, 3, 10, 9)),
        lambda c: c.next_opening(datetime(2026, 3, 10, 9)),
        lambda c: c.take_in(datetime(2026, 3, 10, 9)),
        lambda c: c.explain(datetime(2026, 3, 10, 9)),
    ],
    ids=["is_open", "next_opening", "take_in", "explain"],
)
def test_naive_datetime_is_refused(call: Callable[[ServiceCalendar], object]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call(ServiceCalendar(DEFAULT))


def test_datetime_for_a_date_is_refused() -> None:
    with pytest.raises(TypeError):
        ServiceCalendar(DEFAULT).is_opening_day(rome(2026, 3, 10, 9))


def test_all_closed_week_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        ServiceCalendar(replace(DEFAULT, week=(None,) * 7))
    assert info.value.key == "service_hours.week"
    assert info.value.reason == "no opening hours"


@pytest.mark.parametrize(
    ("week", "key"),
    [
        ((None,) * 6, "service_hours.week"),
        ((OpeningHours(time(9), time(9)), *DEFAULT.week[1:]), "service_hours.week.monday"),
    ],
)
def test_malformed_week_is_a_config_error(week: tuple[OpeningHours | None, ...], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServiceCalendar(replace(DEFAULT, week=week))
    assert info.value.key == key


def test_a_year_of_closure_days_is_a_config_error() -> None:
    closed = frozenset(date(2026, 1, 1) + timedelta(days=n) for n in range(500))
    with pytest.raises(ConfigError, match="no opening within"):
        ServiceCalendar(replace(DEFAULT, closed_dates=closed)).take_in(rome(2026, 1, 1, 9))


def test_unknown_holiday_region_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        ServiceCalendar(ServiceHours(subdivision="XX")).is_open(rome(2026, 3, 10, 9))
    assert info.value.key == "service_hours.subdivision"


# --------------------------------------------------------------------------
# Property: the take-in is the first open instant at or after reception.

ZONES = st.sampled_from([UTC, ROME, IST, timezone(timedelta(hours=-8)), ZoneInfo("America/New_York")])
CALENDARS = {"default": ServiceCalendar(DEFAULT), "genoa": ServiceCalendar(GENOA)}


@settings(deadline=None, max_examples=300)
@given(
    received=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2030, 12, 31, 23, 59), timezones=ZONES),
    which=st.sampled_from(sorted(CALENDARS)),
    fraction=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_take_in_is_the_first_open_instant(received: datetime, which: str, fraction: float) -> None:
    calendar = CALENDARS[which]
    result = calendar.take_in(received)
    start, end = received.astimezone(UTC), result.take_in_at.astimezone(UTC)
    assert end >= start
    assert calendar.is_open(result.take_in_at)
    assert result.in_hours is (start == end)
    if start == end:
        return
    # Closed at reception and at a random point before the take-in...
    assert not calendar.is_open(received)
    assert not calendar.is_open(min(start + (end - start) * fraction, end - timedelta(microseconds=1)))
    # ...and no day's opening instant lies in between.
    day = start.astimezone(ROME).date()
    while day <= end.astimezone(ROME).date():
        opening = DEFAULT.week[day.weekday()]
        if opening is not None and calendar.is_opening_day(day):
            opens = datetime.combine(day, opening.opens, tzinfo=ROME).astimezone(UTC)
            assert not start < opens < end
        day += timedelta(days=1)
