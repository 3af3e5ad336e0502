"""Shared fixtures for the real servers (see tests/servers.py) and the in-process SMTP server.

A test that uses ``server_env``, ``imap_account``, ``pg_url``, ``private_pg`` or
``private_dovecot`` is given the ``servers`` marker automatically, so ``make
unit`` (``-m 'not servers'``) never runs it. When the servers are down those fixtures fail with
the command to run; they never skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from tests.servers import (
    ImapAccount,
    PrivateDovecot,
    PrivatePostgres,
    ServerEnv,
    SmtpCapture,
    create_database,
    drop_database,
    load_env,
    new_imap_account,
    remove_imap_account,
    require_port,
    seed_imap,
)

SERVER_FIXTURES = frozenset({"server_env", "imap_account", "pg_url", "private_dovecot", "private_pg"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


@pytest.fixture(scope="session")
def server_env() -> ServerEnv:
    """Connection facts of the servers scripts/servers.sh started."""
    return load_env()


@pytest.fixture
def imap_account(server_env: ServerEnv) -> Iterator[ImapAccount]:
    """A fresh, empty mailbox of its own (INBOX, Processed, Quarantine) on the test Dovecot."""
    require_port("Dovecot", server_env.imap_host, server_env.imap_port)
    account = new_imap_account(server_env)
    yield account
    remove_imap_account(account)


@pytest.fixture(name="seed_imap")
def seed_imap_fixture() -> Callable[[ImapAccount, Sequence[bytes]], None]:
    """``seed_imap(account, messages)``: MULTIAPPEND into INBOX, 500 per command."""
    return seed_imap


@pytest.fixture
def private_dovecot() -> Iterator[PrivateDovecot]:
    """A running Dovecot of the test's own, to stop and restart mid-test; removed afterwards."""
    server = PrivateDovecot()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A running PostgreSQL cluster of the test's own, to stop and start mid-test; removed afterwards."""
    cluster = PrivatePostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def pg_url(server_env: ServerEnv) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty PostgreSQL database, dropped after the test."""
    yield from _fresh_database(server_env)


@pytest.fixture
def pg_url_2(server_env: ServerEnv) -> Iterator[str]:
    """A second fresh PostgreSQL database, for tests comparing two databases."""
    yield from _fresh_database(server_env)


def _fresh_database(server_env: ServerEnv) -> Iterator[str]:
    require_port("PostgreSQL", server_env.pg_host, server_env.pg_port)
    name = create_database(server_env)
    yield server_env.pg_url(name)
    drop_database(server_env, name)


@pytest.fixture
def smtp_server() -> Iterator[SmtpCapture]:
    """An in-process SMTP server on a fixed free port recording envelopes; stop()/start() keep the port."""
    server = SmtpCapture()
    server.start()
    yield server
    server.stop()
