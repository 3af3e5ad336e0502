"""``maild web``: the form's parts built from the settings, served by waitress (a production WSGI server)."""

from __future__ import annotations

import logging

from maild.pipeline import Triager
from maild.responder import Responder
from maild.settings import Settings
from maild.store import Store
from maild.web.desk import RequestDesk

log = logging.getLogger("maild.web")

THREADS = 4
"""Requests served at once: a PIN check costs a scrypt (tens of ms), the rest is one transaction."""


def open_desk(settings: Settings) -> RequestDesk:
    """The request desk on the configured database, migrated to the current schema."""
    store = Store.open(settings.database.url, ticket_prefix=settings.helpdesk.ticket_prefix,
                       timezone=settings.service_hours.timezone)
    responder = Responder(settings.templates.path, settings.helpdesk, timezone=settings.service_hours.timezone)
    return RequestDesk(settings, Triager.from_settings(settings), responder, store)


def serve(settings: Settings) -> None:
    """Serve the form on ``[web] listen`` until interrupted."""
    import waitress  # noqa: PLC0415 - only this command serves

    from maild.web.app import create_app  # noqa: PLC0415 - Flask only for this command

    desk = open_desk(settings)
    app = create_app(desk)
    web = settings.web
    log.info("web form at http://%s/ (trusted proxies: %s)", web.listen,
             ", ".join(sorted(web.trusted_proxies)) or "none")
    # Behind a trusted proxy the client address comes from X-Forwarded-For (maild.web.app.client_address),
    # so waitress must not rewrite it on its own.
    waitress.serve(app, host=web.host, port=web.port, threads=THREADS, ident="maild",
                   clear_untrusted_proxy_headers=False)
