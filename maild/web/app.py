"""The web request form (Flask): a page for people, no JavaScript needed, and nothing from users unescaped.

Every POST carries a CSRF token (Flask-WTF, kept in a signed session cookie)
and the request id the page was served with; every response carries the
security headers below; every field has a size limit and the whole body one
too. The PIN goes to ``RequestDesk.check_pin`` and nowhere else: it is never
logged, never echoed back into the page, never stored.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from flask import Flask, Response, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import RequestEntityTooLarge

from maild.authorizer import answer_address
from maild.records import Category, Channel, ChannelRequest, Decision
from maild.responder import format_when
from maild.settings import DEFAULT_TEMPLATES
from maild.web.desk import RequestDesk, Submitted, new_request_id
from maild.web.words import LANGUAGES, WORDS, categories

LIMITS: Mapping[str, int] = {"administration": 200, "pin": 16, "name": 80, "email": 254, "category": 32,
                             "subject": 200, "description": 5000, "request_id": 32, "lang": 2}
MAX_BODY = 64 * 1024
"""Bytes of a whole POST: every field at its limit fits, with room for encoding."""
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
_EMAIL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
FIELDS = ("administration", "name", "email", "category", "subject", "description")


@dataclass(frozen=True, slots=True)
class Form:
    """What was typed (the PIN kept apart, never shown again) and what is wrong with it, field by field."""

    values: Mapping[str, str]
    pin: str
    errors: Mapping[str, str]


def client_address(remote: str, forwarded_for: str | None, trusted: frozenset[str]) -> str:
    """The client: the peer, or, when the peer is a trusted proxy, the last hop it was told of that is not one."""
    if remote not in trusted or not forwarded_for:
        return remote
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            return remote  # a hop that is not an address: believe nothing further
        if address not in trusted:
            return address
    return remote


def read_form(data: Mapping[str, str], administrations: tuple[str, ...], words: Mapping[str, str]) -> Form:
    """Each field checked on its own: required, within its limit, one of the choices where there are choices."""
    values = {name: data.get(name, "") for name in FIELDS}
    values = {name: value.strip() if name != "description" else value.strip("\r\n") for name, value in values.items()}
    pin = data.get("pin", "").strip()
    errors: dict[str, str] = {}
    for name, value in (*values.items(), ("pin", pin)):
        if not value.strip():
            errors[name] = words["required"]
        elif len(value) > LIMITS[name]:
            errors[name] = words["too_long"].format(limit=LIMITS[name])
    if "administration" not in errors and values["administration"] not in administrations:
        errors["administration"] = words["bad_choice"]
    if "category" not in errors and values["category"] not in {c.value for c in Category}:
        errors["category"] = words["bad_choice"]
    if "email" not in errors and not _EMAIL.fullmatch(values["email"]):
        errors["email"] = words["bad_email"]
    ordered = {name: errors[name] for name in ("administration", "pin", *FIELDS) if name in errors}
    return Form({k: v for k, v in values.items()}, pin, ordered)


def create_app(desk: RequestDesk, *, clock: Callable[[], datetime] | None = None,
               secret_key: bytes | None = None) -> Flask:
    """The form for ``desk``'s help desk; ``clock`` gives the time (tests set it)."""
    settings = desk.settings
    now = clock or (lambda: datetime.now(UTC))
    templates = Path(settings.templates.path) / "web"
    app = Flask(__name__, static_folder=str(DEFAULT_TEMPLATES / "web" / "static"), static_url_path="/static")
    app.config.update(
        SECRET_KEY=secret_key or os.urandom(32), MAX_CONTENT_LENGTH=MAX_BODY, MAX_FORM_MEMORY_SIZE=MAX_BODY,
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict", WTF_CSRF_TIME_LIMIT=3600,
    )
    app.jinja_loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(templates)),
                                            jinja2.FileSystemLoader(str(DEFAULT_TEMPLATES / "web"))])
    app.jinja_env.autoescape = True  # every template, whatever its name ends with
    app.jinja_env.undefined = jinja2.StrictUndefined
    CSRFProtect(app)
    names = tuple(a.name for a in settings.administrations)
    tz = settings.service_hours.timezone

    def language() -> str:
        # request.form only once its size was accepted: reading an oversized body raises again
        readable = request.content_length is None or request.content_length <= MAX_BODY
        chosen = (request.form.get("lang", "") if readable else "") or request.args.get("lang", "")
        if chosen in WORDS:
            return chosen
        return request.accept_languages.best_match(list(WORDS), default="it") or "it"

    def page(template: str, status: int = 200, **values: Any) -> tuple[str, int]:
        lang = language()
        return render_template(template, lang=lang, t=WORDS[lang], languages=LANGUAGES,
                               helpdesk_name=settings.helpdesk.name, **values), status

    def form_page(form: Form | None = None, status: int = 200, request_id: str | None = None) -> tuple[str, int]:
        lang = language()
        return page("form.html.j2", status, administrations=names, categories=categories(lang), limits=LIMITS,
                    values=form.values if form else dict.fromkeys(FIELDS, ""),
                    errors=form.errors if form else {}, request_id=request_id or new_request_id())

    @app.after_request
    def headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.errorhandler(CSRFError)
    def csrf_failed(_exc: Exception) -> tuple[str, int]:
        words = WORDS[language()]
        return page("problem.html.j2", 400, heading=words["expired_title"], text=words["expired_text"])

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc: Exception) -> tuple[str, int]:
        words = WORDS[language()]
        return page("problem.html.j2", 413, heading=words["too_large_title"], text=words["too_large_text"])

    @app.get("/")
    def form() -> tuple[str, int]:
        return form_page()

    @app.post("/")
    def submit() -> tuple[str, int]:
        words = WORDS[language()]
        request_id = request.form.get("request_id", "")
        if not _REQUEST_ID.fullmatch(request_id):
            return page("problem.html.j2", 400, heading=words["expired_title"], text=words["expired_text"])
        form = read_form(request.form, names, words)
        if form.errors:
            return form_page(form, 400, request_id)
        return _take(form, request_id)

    def _take(form: Form, request_id: str) -> tuple[str, int]:
        words = WORDS[language()]
        adm = desk.administration(form.values["administration"])
        assert adm is not None  # read_form checked it
        moment = now()
        if not (adm.pin_referente_hash or adm.pin_users_hash):
            return form_page(_with_error(form, "administration", words["no_pin"]), 400, request_id)
        client = client_address(request.remote_addr or "", request.headers.get("X-Forwarded-For"),
                                settings.web.trusted_proxies)
        checked = desk.check_pin(adm, form.pin, client, Channel.WEB, moment)
        if checked.locked is not None:
            until = checked.locked.until.astimezone(tz).strftime("%H:%M")
            return form_page(_with_error(form, "pin", words["locked"].format(until=until)), 429, request_id)
        if checked.role is None:
            return form_page(_with_error(form, "pin", words["bad_pin"]), 403, request_id)
        answer = answer_address(adm, checked.role, form.values["email"])
        if answer is None:
            return form_page(_with_error(form, "email", words["foreign_email"].format(
                domains=", ".join(adm.domains) or "-")), 400, request_id)
        done = desk.submit(ChannelRequest(
            request_id=request_id, channel=Channel.WEB, administration=adm.name, requester=answer,
            name=form.values["name"], subject=form.values["subject"], text=form.values["description"],
            chosen=Category(form.values["category"]), role=checked.role,
            role_reason=f"auth: the PIN given on the web form is the {checked.role.value} PIN of {adm.name}",
            origin=client, received_at=moment, language=language()), moment)
        return _done(done)

    def _done(done: Submitted) -> tuple[str, int]:
        lang = language()
        return page("done.html.j2", 200, accepted=done.decision is Decision.ACCEPTED, reference=done.reference,
                    category=dict(categories(lang))[done.category], take_in=format_when(done.take_in_at, lang, tz),
                    in_hours=done.in_hours)

    return app


def _with_error(form: Form, name: str, message: str) -> Form:
    return Form(form.values, "", {name: message, **{k: v for k, v in form.errors.items() if k != name}})
