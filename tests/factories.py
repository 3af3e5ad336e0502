"""Builders of records for unit tests: a valid default, changed by keyword."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from maild.records import Address, ParsedMessage
from maild.settings import Settings, parse_settings

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "corpus"
REFERENTE = "referente.tecnico@ateneo.example.it"
TRUSTED = "mx.servizi.example.it"
PASS = f"{TRUSTED}; dkim=pass header.d=ateneo.example.it; spf=pass; dmarc=pass header.from=ateneo.example.it"


def message(**changes: Any) -> ParsedMessage:
    base = ParsedMessage(
        message_id="<m1@ateneo.example.it>",
        from_addresses=(Address("Alberto Guidi", REFERENTE),),
        from_ambiguous=False,
        reply_to=(), sender=(),
        to=(Address("", "helpdesk-posta@servizi.example.it"),), cc=(),
        subject="Richiesta", date=None, received_at=None,
        auth_results=(PASS,),
        return_path=f"<{REFERENTE}>", auto_submitted=None, precedence=None, x_autoreply=False,
        content_type="text/plain", report_type=None, in_reply_to=(), references=(), language_hints=(),
        body_text="Buongiorno", body_from_html=False, attachments=(), defects=(), size=100,
    )
    return dataclasses.replace(base, **changes)


def settings(**tables: Any) -> Settings:
    data: dict[str, Any] = {
        "helpdesk": {"address": "helpdesk-posta@servizi.example.it", "name": "Help Desk Posta Elettronica",
                     "trusted_authserv_ids": [TRUSTED]},
        "service_hours": {"subdivision": "GE", "closed_dates": ["2026-12-24", "2027-08-16"]},
        "administrations": [{"name": "Ateneo", "referente": REFERENTE,
                             "delegates": ["delegato.sistemi@ateneo.example.it",
                                           "vice.referente@ateneo.example.it"]}],
    }
    data.update(tables)
    return parse_settings(data)
