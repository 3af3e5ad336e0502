"""What the figures were measured on: date, machine, software versions."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg

from tests.factories import REPO
from tests.servers import ServerEnv

LIBRARIES = ("mail-parser", "imapclient", "SQLAlchemy", "psycopg", "Jinja2", "aiosmtpd", "html2text")


def describe(env: ServerEnv, **run: Any) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "memory_gib": _memory_gib(),
                    "os": _os_name(), "kernel": platform.release()},
        "versions": {"maild": _maild_version(), "python": platform.python_version(),
                     "sqlite": sqlite3.sqlite_version, "postgresql": _postgresql(env),
                     "dovecot": _command(["dovecot", "--version"]),
                     **{name: _library(name) for name in LIBRARIES}},
        "run": run,
    }


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip('"')
    except OSError:
        pass
    return platform.system()


def _command(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "unknown"
    return (done.stdout.strip() or "unknown").split("\n")[0]


def _maild_version() -> str:
    version = _library("maild")
    rev = _command(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    try:
        status = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "maild"], capture_output=True,
                                text=True, timeout=10, check=False).stdout
    except OSError:
        status = ""
    return f"{version} ({rev}{', with uncommitted changes' if status.strip() else ''})"


def _library(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _postgresql(env: ServerEnv) -> str:
    try:
        with psycopg.connect(env.pg_conninfo(), connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            settings: dict[str, str] = dict(conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')").fetchall())
    except psycopg.Error:
        return "unknown"
    version = str(row[0]) if row else "unknown"
    return f"{version} (fsync={settings.get('fsync')}, synchronous_commit={settings.get('synchronous_commit')})"
