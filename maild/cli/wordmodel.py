"""``maild word-model``: train the word model on labelled mail, or check that a model file is what its mail gives.

A site retrains it on its own labelled folders (each a set of ``.eml`` files and a ``labels.json``
in the labelling spec's format); the shipped one is trained on the project's labelled sets.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from maild.classifier import classify
from maild.cli.output import EXIT_FAULT, fail
from maild.errors import ConfigError
from maild.pipeline import Triager
from maild.records import Category
from maild.rules.wordmodel import dumps, features, own_subject, sender_names, train
from maild.settings import Settings

PREFIX = 4
"""Letters kept of each word: short enough that a word's forms in either language share them."""
THRESHOLD = 0.5
"""More likely privileged than not: a request read either way is refused rather than accepted (fail closed)."""
MIN_DOCS = 2
"""A feature of a single message only fits that message."""


def _add_word_model(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                    common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("word-model", help="train or check the word model under the rules")
    sub = group.add_subparsers(dest="word_model_command", required=True, metavar="COMMAND")
    for name, handler, what in (("train", _train, "write the model trained on FOLDERs to --out"),
                                ("check", _check, "exit 1 unless --out holds the model FOLDERs give")):
        cmd = sub.add_parser(name, parents=[common], help=what)
        cmd.add_argument("--out", type=Path, required=True, metavar="FILE", help="the model file")
        cmd.add_argument("folders", type=Path, nargs="+", metavar="FOLDER",
                         help="labelled folders: .eml files and their labels.json")
        cmd.set_defaults(handler=handler)


def _train(args: argparse.Namespace, settings: Settings) -> int:
    text = trained(settings, args.folders)
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: trained on {len(args.folders)} folder(s)")
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    if args.out.read_text(encoding="utf-8") != trained(settings, args.folders):
        return fail(f"{args.out} is not the model these folders give: run `maild word-model train`", EXIT_FAULT)
    print(f"{args.out}: the model these folders give")
    return 0


def trained(settings: Settings, folders: Sequence[Path]) -> str:
    """The model file's text for the labelled ``folders``, read by the rules of ``settings``."""
    alone = replace(settings, triage=replace(settings.triage, word_model=None))  # the rules read; no model yet
    triager = Triager.from_settings(alone, compiled=False)
    return dumps(train(_samples(triager, folders), prefix=PREFIX, threshold=THRESHOLD, min_docs=MIN_DOCS))


def _samples(triager: Triager, folders: Sequence[Path]) -> Iterator[tuple[dict[str, str], Category]]:
    """Each labelled human message's features, as the pipeline gives them to the model, and its category."""
    for folder in folders:
        labels = _labels(folder)
        for name in sorted(labels):
            if labels[name]["decision"] == "ignored":
                continue
            message, _pec = triager.read((folder / name).read_bytes())
            classified = classify(message, triager.rules, triager.settings.triage.default_language)
            subject = own_subject(message.subject, triager.rules.reply_prefix)
            yield (features(subject, classified.own_text, PREFIX, sender_names(message.from_addresses)),
                   Category(labels[name]["category"]))


def _labels(folder: Path) -> dict[str, dict[str, str]]:
    try:
        labels: dict[str, dict[str, str]] = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder}", f"no readable labels.json: {exc}") from exc
    return labels


WORD_MODEL_COMMANDS = (_add_word_model,)
