"""A verb carrying a cluster of pronouns is read as the verb with its object pronoun alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.rules.clitics import enclitic, enclitics


@pytest.mark.parametrize(("word", "read"), [
    ("cambiatemela", "cambiatela"),
    ("cancellatemelo", "cancellatelo"),
    ("sbloccarmela", "sbloccarla"),
    ("resettategliela", "resettatela"),
    ("chiudetecele", "chiudetele"),
    ("crearmene", "crearne"),
    ("eliminandola", "eliminarla"),
    ("sospendendola", "sospenderla"),
    ("chiudendomela", "chiuderla"),
])
def test_a_cluster_or_a_gerund_s_pronoun_is_read_as_the_verb_with_its_object(word: str, read: str) -> None:
    found = enclitic(word)
    assert found is not None
    assert found[0] == read


@pytest.mark.parametrize("word", ["cancellatela", "eliminarla", "cancellatemi", "parlatene", "quando",
                                  "secondo", "caramella", "telefonate"])
def test_a_word_without_a_cluster_stays_as_written(word: str) -> None:
    assert enclitic(word) is None


def test_a_word_the_rules_spell_beyond_its_verb_stays_as_written() -> None:
    longest = {"sbloccarmela": len("sbloccarm"), "cambiatemela": len("cambiat")}
    assert enclitics(longest, lambda word: longest[word]) == {"cambiatemela": "cambiatela"}


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="abcdeglimnorstv", min_size=6, max_size=16))
def test_enclitics_reads_every_word_enclitic_reads(word: str) -> None:
    """The cheap test on a word's last letters lets through every word ``enclitic`` reads."""
    found = enclitic(word)
    expected = {word: found[0]} if found is not None and len(word) > 7 else {}
    assert enclitics([word], lambda _word: 0) == expected


def test_enclitics_reads_clusters_and_gerunds_among_other_words() -> None:
    words = ["cambiatemela", "eliminandola", "resettategliela", "informazione", "ordinariamente"]
    assert enclitics(words, lambda _word: 0) == {"cambiatemela": "cambiatela", "eliminandola": "eliminarla",
                                                "resettategliela": "resettatela"}
