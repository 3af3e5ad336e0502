"""Reading an Italian verb that carries a cluster of pronouns as the verb with its object pronoun alone.

"Cambiatemela", "sbloccarmela", "resettategliela" ask for the same action on
the same object as "cambiatela", "sbloccarla", "resettatela": the first
pronoun of the cluster (me-, te-, ce-, ve-, se-, glie-) only says for whom.
A gerund with its pronoun ("eliminandola") is read as the infinitive with it
("eliminarla"). The rules then need to spell out one form per verb and
object, not every cluster; a word that fits no such shape stays as written,
and so does one the rules spell out beyond its verb ("sbloccarm*": unlocking
for me is an account's, not a mailbox's).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

_INDIRECT = "me|te|ce|ve|se|glie"
_DIRECT = "lo|la|li|le|ne"
_CLUSTER = re.compile(rf"(?P<verb>[a-z]{{3,}}?(?:ar|er|ir|ate|ete|ite))(?:{_INDIRECT})(?P<object>{_DIRECT})")
_DIRECT_ENDS = frozenset(_DIRECT.split("|"))
_BEFORE_DIRECT = frozenset({*(p[-2:] for p in _INDIRECT.split("|")), "do"})
"""The two letters before the object pronoun: an indirect pronoun's last two, or the gerund's "-do"."""
_GERUND = re.compile(rf"(?P<stem>[a-z]{{3,}}?)(?P<vowel>a|e)ndo(?:{_INDIRECT})?(?P<object>{_DIRECT})")


def enclitic(word: str) -> tuple[str, int] | None:
    """``word`` with its pronoun cluster reduced to the object pronoun, and the length of its verb; None if
    it carries none."""
    match = _CLUSTER.fullmatch(word)
    if match is not None:
        return match["verb"] + match["object"], match.end("verb")
    match = _GERUND.fullmatch(word)
    if match is not None:
        return f"{match['stem']}{match['vowel']}r{match['object']}", match.end("vowel") + 3
    return None


def enclitics(words: Iterable[str], spelled: Callable[[str], int]) -> dict[str, str]:
    """The words of ``words`` that carry a pronoun cluster or a gerund's pronoun, each with its reading.

    ``spelled`` gives the length of the longest stem of the rules a word starts with (0 for none).
    """
    out = {}
    for word in words:
        if len(word) <= 7 or word[-2:] not in _DIRECT_ENDS or word[-4:-2] not in _BEFORE_DIRECT:
            continue  # every reading below ends so: most words are not even tried
        if (found := enclitic(word)) is not None and spelled(word) <= found[1]:
            out[word] = found[0]
    return out
