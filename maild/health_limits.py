"""The health check's limits, which ``maild status`` offers as its defaults.

Apart from ``maild.health`` because the command line builds every command's
options at each start, and importing the health check loads the database
layer and the IMAP client: ``maild triage`` and the triage worker need neither.
"""

from __future__ import annotations

from datetime import timedelta

MAX_AGE = timedelta(seconds=120)
"""Oldest acceptable heartbeat and last successful poll."""
PROBE_TIMEOUT = 5.0
"""Seconds the mailbox probe may take."""
