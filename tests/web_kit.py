"""What the web and channel tests share: a help desk with PINs, a clock, a form filled in like a person would."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask.testing import FlaskClient
from werkzeug.datastructures import Headers

from maild.pins import hash_pin
from maild.settings import Settings
from tests.factories import REFERENTE
from tests.factories import settings as make_settings

ROME = ZoneInfo("Europe/Rome")
REFERENTE_PIN = "4821"
USERS_PIN = "1357"
REFERENTE_HASH = hash_pin(REFERENTE_PIN)
USERS_HASH = hash_pin(USERS_PIN)
MONDAY_10 = datetime(2027, 5, 17, 10, 0, tzinfo=ROME)
"""An opening day, in service hours."""
SATURDAY_18 = datetime(2027, 5, 15, 18, 0, tzinfo=ROME)
"""After Saturday's closing: the next opening is Monday 08:00."""
USER = "anna.verdi@ateneo.example.it"


def web_settings(db_url: str, **tables: Any) -> Settings:
    admin = {"name": "Ateneo", "referente": REFERENTE, "domains": ["ateneo.example.it"],
             "delegates": ["delegato.sistemi@ateneo.example.it"],
             "pin_referente_hash": REFERENTE_HASH, "pin_users_hash": USERS_HASH}
    other = {"name": "Comune", "referente": "ced@comune.example.it", "domains": ["comune.example.it"]}
    return make_settings(administrations=[admin, other], database={"url": db_url}, **tables)


@dataclass
class Clock:
    now: datetime = MONDAY_10

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Browserless:
    """A Flask test client used like a browser: GET the form, keep its tokens, POST it back."""

    client: FlaskClient
    lang: str = "it"
    last_page: str = ""
    fields: dict[str, str] = field(default_factory=dict)

    def open_form(self) -> str:
        page = self.client.get(f"/?lang={self.lang}").get_data(as_text=True)
        self.fields = {"csrf_token": _hidden(page, "csrf_token"), "request_id": _hidden(page, "request_id"),
                       "lang": self.lang}
        self.last_page = page
        return page

    def submit(self, **values: str) -> tuple[int, str]:
        if not self.fields:
            self.open_form()
        data = {"administration": "Ateneo", "pin": USERS_PIN, "name": "Anna Verdi", "email": USER,
                "category": "anagrafica", "subject": "Telefono in rubrica",
                "description": "Vorrei aggiornare il mio numero di telefono in rubrica.", **self.fields, **values}
        response = self.client.post("/", data=data)
        self.last_page = response.get_data(as_text=True)
        return response.status_code, self.last_page


def _hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match is not None, f"no hidden field {name}"
    return match[1]


def ticket_on(page: str) -> str:
    match = re.search(r'<strong id="ticket">([A-Z]+-\d{4}-\d{6})</strong>', page)
    assert match is not None, page
    return match[1]


def header_map(response_headers: Headers) -> dict[str, str]:
    return {k.lower(): v for k, v in response_headers.items()}
