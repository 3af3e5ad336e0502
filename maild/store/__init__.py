"""maild's database layer: the source of truth for messages, tickets, events and replies.

Use ``Store.open(url)``; every method is one transaction and returns the frozen
records of ``maild.records``, never ORM objects.
"""

from maild.store.core import Store

__all__ = ["Store"]
