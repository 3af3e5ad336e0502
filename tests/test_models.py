"""The cleaning behind ``SafeJSON``: every string inside a JSON value, keys too, as ``clean_text``.

``clean_json`` copies a list or dict whose strings are all clean already as a whole; these prove
that this gives exactly what cleaning item by item gives, for every shape a JSON value can take.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from maild.records import EventKind
from maild.store.models import clean_json, clean_text


class Shouting(str):
    """A key whose ``str()`` is not itself."""

    __slots__ = ()

    def __str__(self) -> str:
        return self.upper()


PIECES = ("\x00", "\ud800", "\udfff", "\ud83d", "\ude00", "\ud83d\ude00", "è", "€", "a", " ")
"""NUL, lone high and low surrogates (which join into pairs next to each other), a valid pair, non-ASCII."""

strings = st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=6).map("".join)
keys = (strings | st.integers() | st.booleans() | st.none() | st.floats() | st.sampled_from(EventKind)
        | strings.map(Shouting))
scalars = st.none() | st.booleans() | st.integers() | st.floats() | strings
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.lists(inner, max_size=5).map(tuple)
                      | st.dictionaries(keys, inner, max_size=5), max_leaves=20)


def _item_by_item(value: Any) -> Any:
    """One level of ``clean_json`` as its docstring says, the levels below by ``clean_json`` itself."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


@settings(max_examples=1000, deadline=None)
@given(values)
def test_a_json_value_is_cleaned_as_item_by_item(value: Any) -> None:
    """Equal at every level for every value, hence equal to cleaning item by item all the way down;
    compared by ``repr`` so that types (True against 1, str subclasses) and key order count too."""
    assert repr(clean_json(value)) == repr(_item_by_item(value))


@given(st.lists(strings, max_size=6), st.dictionaries(strings, strings, max_size=6))
def test_the_strings_of_a_cleaned_value_are_storable(items: list[str], mapping: dict[str, str]) -> None:
    cleaned = clean_json([items, mapping])
    for text in (*cleaned[0], *cleaned[1], *cleaned[1].values()):
        assert "\x00" not in text
        text.encode("utf-8")


def test_clean_values_come_back_as_new_lists_and_dicts_of_the_same_strings() -> None:
    reasons = ("screen: no sign of automatic mail", "città e perché", "\U0001f600")
    data = {"subject": "Richiesta", "from": "mario@x.it"}
    assert clean_json(reasons) == list(reasons)
    cleaned = clean_json(data)
    assert cleaned == data and cleaned is not data
    assert all(a is b for a, b in zip(cleaned.values(), data.values(), strict=True))


def test_dirty_strings_keys_and_non_string_items_are_cleaned_one_by_one() -> None:
    assert clean_json(["ok", "a\x00b", "\ud800", "\ud83d\ude00", "è"]) == ["ok", "ab", "\ufffd", "\U0001f600", "è"]
    assert clean_json(["\ud83d", "\ude00"]) == ["\ufffd", "\ufffd"]  # halves in two strings make no pair
    assert clean_json(["a", 1, None, True, ("b\x00",)]) == ["a", 1, None, True, ["b"]]
    assert clean_json({"k\x00": "v", 1: None, False: [2.5], "n": {"\udcff": "x"}}) == {
        "k": "v", "1": None, "False": [2.5], "n": {"\ufffd": "x"},
    }
    assert clean_json({1: "one", "1": "uno"}) == {"1": "uno"}  # keys equal once made strings: the last value
    by_kind = clean_json({EventKind.RECEIVED: "x"})
    assert by_kind == {"received": "x"} and type(next(iter(by_kind))) is str
    assert clean_json({Shouting("key"): "v"}) == {"KEY": "v"}
