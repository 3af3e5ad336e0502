"""A word model of the project's labelled mail: a net under the rules for privileged requests in words no rule knows.

The rules read acts and frames and explain every step, but a request in an idiom they were never
given ("spin up a shared inbox") reaches no frame and would be accepted as harmless. The model is
a naive Bayes over the first letters of each word and of each pair of words, trained by
``maild word-model train`` on the labelled sets; it only ever adds a privileged reading (which
authorization then decides), never removes one, and its reason names the words that weighed most.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType
from typing import Any

from maild.errors import RulesError
from maild.records import Address, Category
from maild.rules.textclean import fold

_WORD = re.compile(r"[a-z]{3,}")
"""Words of three letters or more: shorter ones are articles and prepositions in both languages."""
PRIVILEGED = "privileged"
"""The two privileged categories as one class: the first model asks whether either was requested."""


@dataclass(frozen=True, slots=True)
class Reading:
    """The model's privileged reading of a text: the more likely privileged category, and why."""

    category: Category
    probability: float
    """How likely the text asks for one of the two privileged categories."""
    words: tuple[str, ...]
    """The sender's words that weighed most towards it."""

    @property
    def reason(self) -> str:
        said = ", ".join(f"'{w}'" for w in self.words)
        return (f"word model: a privileged request more likely than not ({self.probability:.2f}), "
                f"read as {self.category.value}, from {said}")


@dataclass(frozen=True, slots=True)
class NaiveBayes:
    """Each class's log prior and, per feature, the log of how likely a document of each class holds it."""

    classes: tuple[str, ...]
    priors: tuple[float, ...]
    logs: Mapping[str, tuple[float, ...]]

    @classmethod
    def of_counts(cls, classes: tuple[str, ...], docs: Sequence[int],
                  counts: Mapping[str, Sequence[int]]) -> NaiveBayes:
        """From document counts per class and, per feature, the documents of each class holding it
        (add-one smoothed), worked out once so a text costs one sum per class."""
        total = sum(docs)
        logs = {f: tuple(math.log((n + 1) / (d + 2)) for n, d in zip(row, docs, strict=True))
                for f, row in counts.items()}
        return cls(classes, tuple(math.log(n / total) for n in docs), MappingProxyType(logs))

    def posterior(self, features: Iterable[str]) -> dict[str, float]:
        """Each class's probability given the features present (absent ones are not counted); summed exactly,
        so the features' order (a set's, which varies with the hash seed) cannot move the outcome."""
        held = [logs for logs in map(self.logs.get, features) if logs is not None]
        columns = zip(*held, strict=True) if held else ([] for _ in self.priors)
        sums = [prior + math.fsum(column) for prior, column in zip(self.priors, columns, strict=True)]
        top = max(sums)
        weights = [math.exp(v - top) for v in sums]
        return {c: w / sum(weights) for c, w in zip(self.classes, weights, strict=True)}

    def leaning(self, feature: str, towards: int) -> float:
        """How much one feature moves the odds towards class ``towards`` (a log ratio; 0 when unknown)."""
        held = self.logs.get(feature)
        if held is None:
            return 0.0
        return held[towards] - max(v for i, v in enumerate(held) if i != towards)


@dataclass(frozen=True, slots=True)
class WordModel:
    """Two naive Bayes models over the same features: privileged or one of the ordinary categories, then which
    privileged category."""

    prefix: int
    """Letters kept of each word: a crude stem that needs no dictionary and serves Italian and English alike."""
    threshold: float
    privileged: NaiveBayes
    kind: NaiveBayes
    shown: int = 4

    def reading(self, subject: str, text: str, names: frozenset[str] = frozenset()) -> Reading | None:
        """The privileged reading when the model finds one more likely than the threshold, else None."""
        probability = self.privileged.posterior(feature_keys(subject, text, self.prefix, names))[PRIVILEGED]
        if probability <= self.threshold:
            return None
        found = features(subject, text, self.prefix, names)
        kinds = self.kind.posterior(found)
        category = Category(max(self.kind.classes, key=lambda c: kinds[c]))
        towards = self.privileged.classes.index(PRIVILEGED)
        leaning = {f: self.privileged.leaning(f, towards) for f in found}
        ranked = sorted(found, key=lambda f: (-leaning[f], f))
        words = tuple(found[f] for f in ranked[:self.shown] if leaning[f] > 0)
        return Reading(category, probability, words)


def own_subject(subject: str, reply_prefix: re.Pattern[str]) -> str:
    """The subject as the model reads it: a reply's or a forward's ("Re: …") is the thread's, not the sender's
    request, as the rules read it too."""
    return "" if reply_prefix.match(fold(subject)) else subject


def sender_names(addresses: Iterable[Address]) -> frozenset[str]:
    """The words of the senders' names and mailboxes: who writes says nothing of what is asked, and a name
    seen once beside a privileged request would weigh for it ("Francesca Loi" asking to join a list)."""
    return frozenset(w for a in addresses for w in _WORD.findall(fold(f"{a.name} {a.addr.partition('@')[0]}")))


def feature_keys(subject: str, text: str, prefix: int, names: frozenset[str] = frozenset()) -> set[str]:
    """The keys of ``features``, without the words: all most messages need."""
    out: set[str] = set()
    for _, stems in _lines(subject, text, prefix, names):
        out.update(stems)
        out.update(map("_".join, pairwise(stems)))
    return out


def features(subject: str, text: str, prefix: int, names: frozenset[str] = frozenset()) -> dict[str, str]:
    """Each word's first ``prefix`` letters, and each pair's within a line, with the words they were made from."""
    out: dict[str, str] = {}
    for words, stems in _lines(subject, text, prefix, names):
        for i, stem in enumerate(stems):
            out.setdefault(stem, words[i])
            if i:
                out.setdefault(f"{stems[i - 1]}_{stem}", f"{words[i - 1]} {words[i]}")
    return out


def _lines(subject: str, text: str, prefix: int, names: frozenset[str]) -> Iterator[tuple[list[str], list[str]]]:
    """Each line's words but the sender's names, and their stems: pairs never span a line break, where a new
    thought starts."""
    for line in fold(f"{subject}\n{text}").splitlines():
        words = [w for w in _WORD.findall(line) if w not in names] if names else _WORD.findall(line)
        yield words, [w[:prefix] for w in words]


def train(samples: Iterable[tuple[Mapping[str, str], Category]], *, prefix: int, threshold: float,
          min_docs: int) -> dict[str, Any]:
    """The model file's contents from (features, label) pairs: features held by fewer than ``min_docs``
    documents are dropped (they only fit the messages they came from)."""
    classes = [c.value for c in Category]
    docs = dict.fromkeys(classes, 0)
    counts: dict[str, dict[str, int]] = {}
    for features, category in samples:
        docs[category.value] += 1
        for feature in features:
            held = counts.setdefault(feature, dict.fromkeys(classes, 0))
            held[category.value] += 1
    kept = {f: [held[c] for c in classes] for f, held in sorted(counts.items()) if sum(held.values()) >= min_docs}
    return {"version": 1, "prefix": prefix, "threshold": threshold, "min_docs": min_docs, "classes": classes,
            "docs": [docs[c] for c in classes], "counts": kept}


def dumps(data: Mapping[str, Any]) -> str:
    """The model file's text: one feature a line, so a retrained model's diff is readable."""
    head = {k: v for k, v in data.items() if k != "counts"}
    lines = [f"  {json.dumps(f)}: {json.dumps(v)}" for f, v in data["counts"].items()]
    return json.dumps(head)[:-1] + ', "counts": {\n' + ",\n".join(lines) + "\n}}\n"


def load_word_model(path: Path) -> WordModel:
    """Read a model file written by ``maild word-model train`` (``RulesError`` if it is not one)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return _model(data)
    except OSError as exc:
        raise RulesError(f"{path}: cannot read word model: {exc.strerror}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise RulesError(f"{path}: not a word model file: {exc}") from exc


def _model(data: Mapping[str, Any]) -> WordModel:
    if data["version"] != 1:
        raise ValueError(f"version {data['version']!r}, expected 1")
    classes: Sequence[str] = data["classes"]
    if sorted(classes) != sorted(c.value for c in Category):
        raise ValueError(f"classes {classes!r}")
    index = {c: i for i, c in enumerate(classes)}
    privileged = [index[c.value] for c in Category if c.privileged]
    ordinary = [c.value for c in Category if not c.privileged]
    kinds = [c.value for c in Category if c.privileged]

    def merged(row: Sequence[int]) -> tuple[int, ...]:
        return sum(row[i] for i in privileged), *(row[index[c]] for c in ordinary)

    counts: Mapping[str, Sequence[int]] = data["counts"]
    docs: Sequence[int] = data["docs"]
    return WordModel(
        prefix=int(data["prefix"]),
        threshold=float(data["threshold"]),
        privileged=NaiveBayes.of_counts((PRIVILEGED, *ordinary), merged(docs),
                                        {f: merged(row) for f, row in counts.items()}),
        kind=NaiveBayes.of_counts(tuple(kinds), tuple(docs[index[k]] for k in kinds),
                                  {f: tuple(row[index[k]] for k in kinds) for f, row in counts.items()
                                   if any(row[index[k]] for k in kinds)}),
    )
